"""The listwise LLM reranker against a real OpenAI-compatible server (``transformers serve`` with a
tiny random Llama whose words are the passage identifiers, tests/llm_server.py): a request's
``logit_bias`` makes every generated token one identifier, so the test knows each window's answer
and works the sliding window's result out by hand.

``transformers serve`` ignores ``logprobs`` (chat and text completions alike), so FIRST's
first-token scoring is checked on a recorded vLLM response, replayed by a stub server on loopback.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.rerankers import make_reranker
from rerank_lab.rerankers.listwise import ListwiseLLMReranker
from rerank_lab.rerankers.listwise_prompt import logprob_order, parse_permutation, windows
from rerank_lab.score import rerank, reranked_run
from rerank_lab.score_cache import ScoreCache
from tests.llm_server import VOCAB as SPECIAL
from tests.llm_server import build_tiny_llm, transformers_serve

VOCAB = {**{t: i for t, i in SPECIAL.items() if i < 4}, **{f"[{i}]": 3 + i for i in range(1, 10)}, ">": 13, "maybe": 14}
MAYBE = {str(VOCAB["maybe"]): 100.0}  # an answer naming no passage
QUERY = "which passage"
LETTERS = "abcdefg"
PASSAGES = [f"passage {c}" for c in LETTERS]


def first(i: int) -> dict[str, float]:
    """Every generated token is ``[i]``: each window puts its i-th passage first, the rest in order."""
    return {str(VOCAB[f"[{i}]"]): 100.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("listwise")
    model = build_tiny_llm(root / "tiny-llama", VOCAB)
    with transformers_serve(model, root / "serve.log") as url:
        yield url, str(model)


def _reranker(server, **settings) -> ListwiseLLMReranker:
    url, model = server
    return make_reranker(
        "llm", {"type": "listwise-llm", "base_url": url, "model": model, "window": 3, "stride": 2, "max_tokens": 4, **settings}
    )


def _order(scores: np.ndarray) -> str:
    return "".join(LETTERS[i] for i in np.argsort(-scores, kind="stable"))


# windows of 3 from the bottom up by 2: [e f g], then [c d .], then [a b .], each after the last
@pytest.mark.parametrize(
    ("bias", "want"),
    [
        (first(2), "badcfeg"),  # efg -> feg: abcd|feg; c d f -> d c f: ab|dcf|eg; a b d -> b a d
        (first(3), "gabcdef"),  # efg -> gef; c d g -> g c d; a b g -> g a b: g climbs from the bottom to the top
        (first(1), "abcdefg"),
    ],
)
def test_the_sliding_window_gives_the_order_the_answers_imply(server, bias, want):
    scorer = _reranker(server, logit_bias=bias).scorer(server[1], ScoreCache(None))
    (scores,) = scorer.score_lists([(QUERY, PASSAGES)])
    assert _order(scores) == want
    assert sorted(scores.tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # len(list) - rank
    assert (scorer.forward_calls, scorer.pairs_scored, scorer.cache.hits) == (3, 9, 0)


def test_an_answer_naming_no_passage_keeps_the_order_and_is_counted(server, caplog):
    scorer = _reranker(server, logit_bias=MAYBE).scorer(server[1], ScoreCache(None))
    with caplog.at_level(logging.WARNING, logger="rerank_lab.rerankers.listwise"):
        (scores,) = scorer.score_lists([(QUERY, PASSAGES)])
    assert scores.tolist() == [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert "3 of 3 windows got an answer naming no passage; they kept their order" in caplog.text


def test_a_rerun_asks_nothing_and_force_asks_again(server):
    scorer = _reranker(server, logit_bias=first(2)).scorer(server[1], ScoreCache(None))
    lists = [(QUERY, PASSAGES), ("another query", PASSAGES[:4])]  # 3 windows of 3, then [b c d] and [a .]
    want = scorer.score_lists(lists)
    assert (scorer.forward_calls, scorer.pairs_scored) == (5, 9 + 5)
    again = _reranker(server, logit_bias=first(2)).scorer(server[1], ScoreCache(None))
    assert [s.tolist() for s in again.score_lists(lists)] == [s.tolist() for s in want]
    assert (again.forward_calls, again.pairs_scored, again.cache.hits) == (0, 0, 14)
    forced = _reranker(server, logit_bias=first(2), force=True).scorer(server[1], ScoreCache(None))
    forced.score_lists(lists)
    assert (forced.forward_calls, forced.cache.hits) == (5, 0)
    other = _reranker(server, logit_bias=first(3)).scorer(server[1], ScoreCache(None))  # another request: not the cached answers
    assert _order(other.score_lists(lists)[0]) == "gabcdef" and other.forward_calls == 5


def test_the_score_stage_puts_the_head_in_the_llms_order(server):
    run = {
        "q1": {f"d{i}": 10.0 - i for i in range(9)},  # d0 first; the head is d0..d6
        "q2": {"x": 2.0, "y": 1.0},
    }
    queries = {"q1": QUERY, "q2": "two passages"}
    passages = {f"d{i}": f"passage {i}" for i in range(9)} | {"x": "passage x", "y": "passage y"}
    scorer = _reranker(server, logit_bias=first(3)).scorer(server[1], ScoreCache(None))
    head = rerank(run, queries, passages, scorer, top_k=7)
    final = reranked_run(run, head)
    assert list(final["q1"]) == ["d6", "d0", "d1", "d2", "d3", "d4", "d5", "d7", "d8"]  # as "gabcdef", then the tail
    assert list(final["q2"]) == ["x", "y"]  # a window of 2 has no [3]: the answer names no passage in range
    assert scorer.forward_calls == 3 + 1


def test_scoring_first_needs_a_server_that_returns_logprobs(server):
    url = server[0]
    scorer = _reranker(server, logit_bias=first(2), scoring="first").scorer(server[1], ScoreCache(None))
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(url)} \(.*\): the LLM server returned no log-probabilities.* \(fix: set rerankers.<name>.scoring"
    ):
        scorer.score_lists([(QUERY, PASSAGES)])


def test_an_unreachable_server_is_one_line_naming_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    scorer = make_reranker("llm", {"type": "listwise-llm", "base_url": url, "model": "m", "max_retries": 0}).scorer("m", ScoreCache(None))
    with pytest.raises(ConfigError, match=rf"^{re.escape(url)}: cannot reach the LLM server \(.*\) \(fix: start the server") as err:
        scorer.score_lists([(QUERY, PASSAGES)])
    assert "\n" not in str(err.value)


# --- FIRST: a recorded vLLM chat completion (abridged), replayed ---------------------------------

RECORDED = {
    "id": "chatcmpl-recorded",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "[3] > [2] > [1] > [4]"},
            "logprobs": {
                "content": [
                    {"token": "[", "logprob": -0.01, "top_logprobs": [{"token": "[", "logprob": -0.01}, {"token": "The", "logprob": -5.2}]},
                    {
                        "token": "3",
                        "logprob": -0.4,
                        "top_logprobs": [
                            {"token": "3", "logprob": -0.4},
                            {"token": "1", "logprob": -1.0},
                            {"token": " 1", "logprob": -1.0},  # a variant of 1: the two add up to -0.31, above 3's -0.4
                            {"token": "7", "logprob": -3.0},  # out of range
                            {"token": "]", "logprob": -6.0},
                        ],
                    },
                    {"token": "]", "logprob": -0.02, "top_logprobs": [{"token": "]", "logprob": -0.02}]},
                ]
            },
        }
    ],
}


def test_first_token_logprobs_order_a_window():
    from openai.types.chat import ChatCompletion

    content = ChatCompletion.model_validate(RECORDED).choices[0].logprobs.content
    assert logprob_order(content, 4) == [0, 2, 1, 3]  # 1 (both variants), 3, then 2 and 4 (absent) in their order
    assert logprob_order(content[:1], 4) is None  # no generated token names a passage
    assert logprob_order(content, 2) is None  # the generated 3 names no passage of a window of 2


@pytest.fixture
def replay():
    """A stub OpenAI server on loopback answering every chat completion with :data:`RECORDED`; it
    keeps the request bodies. Another path is a 404."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            found = self.path == "/v1/chat/completions"
            if found:
                bodies.append(body)
            data = json.dumps(RECORDED if found else {"error": {"message": "no such route"}}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", bodies
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("scoring", "want", "asked_logprobs"),
    [("auto", "acbd", True), ("first", "acbd", True), ("permutation", "cbad", False)],
)
def test_first_token_logprobs_score_windows_where_the_server_returns_them(replay, scoring, want, asked_logprobs):
    url, bodies = replay
    settings = {"type": "listwise-llm", "base_url": f"{url}/v1", "model": "m", "scoring": scoring, "top_logprobs": 5}
    (scores,) = make_reranker("llm", settings).scorer("m", ScoreCache(None)).score_lists([(QUERY, PASSAGES[:4])])
    assert _order(scores) == want
    assert ("logprobs" in bodies[0], bodies[0].get("top_logprobs")) == (asked_logprobs, 5 if asked_logprobs else None)
    assert bodies[0]["temperature"] == 0.0 and "[1] passage a\n[2] passage b" in bodies[0]["messages"][0]["content"]


def test_an_http_error_is_one_line_naming_the_server(replay):
    url = f"{replay[0]}/nowhere"
    scorer = make_reranker("llm", {"type": "listwise-llm", "base_url": url, "model": "m"}).scorer("m", ScoreCache(None))
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(url)} \(m\): the LLM server answered HTTP 404: .* \(fix: check rerankers.<name>.model"
    ):
        scorer.score_lists([(QUERY, PASSAGES[:3])])


# --- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "n", "want"),
    [
        ("[2] > [3] > [1]", 3, [1, 2, 0]),
        ("[2] > [2] > [1] > [2]", 3, [1, 0, 2]),  # repeats dropped, the missing 3 appended
        ("[4] > [1]", 4, [3, 0, 1, 2]),  # missing 2 and 3 appended in their current order
        ("[0] > [5] > [2] > [12]", 4, [1, 0, 2, 3]),  # 0, 5 and 12 are out of range
        ("[10] > [2] > [11]", 12, [9, 1, 10, 0, 2, 3, 4, 5, 6, 7, 8, 11]),  # two-digit identifiers
        ("2 > 1", 3, [1, 0, 2]),  # no brackets: the bare numbers
        ("Passage [3] is best, then 1", 3, [2, 0, 1]),  # brackets present: only they are read
        ("I cannot rank these passages.", 3, None),
        ("", 3, None),
        ("[9] > [7]", 3, None),  # only strays
    ],
)
def test_parse_permutation(answer, n, want):
    assert parse_permutation(answer, n) == want


def test_parse_permutation_with_letters():
    assert parse_permutation("[C] > [A] > [C] > [Z]", 4, "letters") == [2, 0, 1, 3]
    assert parse_permutation("B > D", 4, "letters") == [1, 3, 0, 2]


@pytest.mark.parametrize(("n", "window", "stride"), [(100, 20, 10), (21, 20, 10), (7, 3, 3), (5, 2, 1), (2, 20, 10)])
def test_the_windows_cover_the_list_bottom_up_and_overlap(n, window, stride):
    spans = windows(n, window, stride)
    assert spans[0][1] == n and spans[-1][0] == 0
    assert all(0 < end - start <= window for start, end in spans)
    assert all(b_end == a_end - stride for (_, a_end), (_, b_end) in zip(spans, spans[1:]))  # up by stride
    assert set().union(*(range(s, e) for s, e in spans)) == set(range(n))


# --- params ----------------------------------------------------------------------------------------


def test_the_registry_builds_the_entry_with_its_defaults():
    reranker = make_reranker("llm", {"type": "listwise-llm", "model": "Qwen/Qwen3-8B", "base_url": "http://127.0.0.1:8000/v1"})
    assert isinstance(reranker, ListwiseLLMReranker) and reranker.family == "listwise-llm"
    assert (reranker.window, reranker.stride, reranker.scoring, reranker.temperature, reranker.force) == (20, 10, "auto", 0.0, False)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"scoring": "fist"}, r"rerankers\.llm\.scoring: unknown value, got 'fist' \(fix: did you mean 'first'\?"),
        ({"base_url": None}, r"rerankers\.llm\.base_url: must be a string"),
        ({"window": 1}, r"rerankers\.llm\.window: must be >= 2, got 1"),
        ({"stride": 30}, r"rerankers\.llm\.stride: must be <= window \(20\).*, got 30"),
        ({"identifiers": "letters", "window": 30}, r"rerankers\.llm\.window: must be <= 26 with identifiers: letters, got 30"),
        ({"prompt": "rank: {passages}"}, r"rerankers\.llm\.prompt: lacks \{query\}"),
        ({"prompt": "{query} {passages} {title}"}, r"rerankers\.llm\.prompt: names \{title\}"),
        ({"temperature": "0"}, r"rerankers\.llm\.temperature: must be a number"),
        ({"api_key": "sk-1"}, r"rerankers\.llm\.api_key: unknown key \(fix: did you mean 'api_key_env'\?"),
    ],
)
def test_a_bad_field_names_its_key(bad, said):
    settings = {"type": "listwise-llm", "model": "m", "base_url": "http://127.0.0.1:8000/v1", **bad}
    with pytest.raises(ConfigError, match=rf"^{said}") as err:
        make_reranker("llm", settings)
    assert "\n" not in str(err.value)


def test_the_base_url_is_required():
    with pytest.raises(ConfigError, match=r"^rerankers\.llm\.base_url: missing \(fix: set base_url\)"):
        make_reranker("llm", {"type": "listwise-llm", "model": "m"})


def test_the_api_key_comes_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "secret-from-env")
    reranker = make_reranker("llm", {"type": "listwise-llm", "model": "m", "base_url": "http://h/v1", "api_key_env": "MY_LLM_KEY"})
    scorer = reranker.scorer("m", ScoreCache(None))
    assert scorer._client().api_key == "secret-from-env" and "secret" not in json.dumps(scorer._request(QUERY, PASSAGES))
    monkeypatch.delenv("MY_LLM_KEY")
    assert scorer._client().api_key == "none"  # unset: a placeholder (a local server wants none)
