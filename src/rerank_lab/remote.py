"""Is the DVC remote usable? One cheap request before a push or pull, and one line when it is not.

``dvc pull`` against a misconfigured S3 remote fails late and obscurely (``unexpected error -
Forbidden: ... HeadObject``, or eight seconds of retries on a dead endpoint). :func:`check_remote`
reads the remote the way DVC does (``.dvc/config``, ``.dvc/config.local``, the user's and system's
config; credentials from there or from the usual AWS chain: ``AWS_ACCESS_KEY_ID`` ..., a profile)
and lists one key of it, with one attempt and short timeouts. A wrong key, a dead endpoint or a
missing bucket becomes a :class:`~rerank_lab.errors.ConfigError` naming the remote, its URL and the
fix. Secrets never appear in a message.

Run it by hand: ``rerank-lab remote-check [--remote NAME] [--repo DIR]`` (exit status 2 on a
problem).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from rerank_lab.errors import ConfigError, unknown_name

CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed"}
)


@dataclass(frozen=True)
class Remote:
    """A DVC remote as its config describes it (``settings`` holds every key but ``url``)."""

    name: str
    url: str
    settings: dict[str, Any]

    @property
    def where(self) -> str:
        """How messages name it.

        >>> Remote("storage", "s3://team/cache", {"endpointurl": "http://127.0.0.1:9000"}).where
        "DVC remote 'storage' (s3://team/cache, endpoint http://127.0.0.1:9000)"
        """
        endpoint = self.settings.get("endpointurl")
        return f"DVC remote {self.name!r} ({self.url}{f', endpoint {endpoint}' if endpoint else ''})"


def read_remote(repo: Path, name: str | None = None) -> Remote:
    """The remote ``name`` (default: ``core.remote``) of the DVC repository ``repo``, from every config level."""
    from dvc.config import Config
    from dvc.config import ConfigError as DvcConfigError

    dvc_dir = Path(repo) / ".dvc"
    if not dvc_dir.is_dir():
        raise ConfigError("not a DVC repository", path=repo, fix="run this from the root of the project (where .dvc/ is)")
    try:
        config = Config(dvc_dir=str(dvc_dir))
    except DvcConfigError as exc:  # a malformed config file: DVC's message names the file and key
        raise ConfigError(" ".join(str(exc).split()), path=dvc_dir, fix="correct it with dvc remote modify / dvc config") from None
    remotes = dict(config.get("remote", {}))
    name = name or config.get("core", {}).get("remote")
    if not name:
        fix = "name one with --remote" if remotes else "add one: dvc remote add -d storage s3://BUCKET/PATH"
        raise ConfigError("no default DVC remote (core.remote) is set", path=dvc_dir / "config", fix=fix)
    if name not in remotes:
        raise unknown_name("DVC remote", name, list(remotes) or ["(none: dvc remote add -d NAME URL)"], path=str(dvc_dir / "config"))
    settings = dict(remotes[name])
    return Remote(name, str(settings.pop("url")), settings)


def check_remote(repo: Path, name: str | None = None, timeout: float = 5.0) -> str:
    """Probe the remote; return a one-line description of what answered, or raise :class:`ConfigError`."""
    remote = read_remote(repo, name)
    scheme = urlsplit(remote.url).scheme
    if scheme == "s3":
        return _check_s3(remote, timeout)
    if scheme in ("", "file") or len(scheme) == 1:  # a path (a Windows drive letter parses as a scheme)
        path = Path(urlsplit(remote.url).path if scheme == "file" else remote.url)
        path = path if path.is_absolute() else Path(repo) / ".dvc" / path  # DVC resolves it against .dvc/
        if not path.is_dir():
            raise ConfigError(
                f"folder {path} does not exist", path=remote.where, fix=f"create it, or: dvc remote modify {remote.name} url PATH"
            )
        return f"{remote.where}: folder exists"
    return f"{remote.where}: not probed ({scheme} remotes are checked by dvc itself)"


def _s3_client(remote: Remote, timeout: float):
    import botocore.config
    import botocore.session
    from botocore import UNSIGNED

    s = remote.settings
    session = botocore.session.Session(profile=s.get("profile"))
    if s.get("credentialpath"):
        session.set_config_variable("credentials_file", s["credentialpath"])
    if s.get("configpath"):
        session.set_config_variable("config_file", s["configpath"])
    options: dict[str, Any] = {"connect_timeout": timeout, "read_timeout": timeout, "retries": {"max_attempts": 1, "mode": "standard"}}
    if s.get("allow_anonymous_login"):
        options["signature_version"] = UNSIGNED
    return session.create_client(
        "s3",
        endpoint_url=s.get("endpointurl"),
        region_name=s.get("region") or session.get_config_variable("region") or "us-east-1",
        aws_access_key_id=s.get("access_key_id"),
        aws_secret_access_key=s.get("secret_access_key"),
        aws_session_token=s.get("session_token"),
        use_ssl=s.get("use_ssl", True),
        verify=s.get("ssl_verify"),
        config=botocore.config.Config(**options),
    )


def _credential_source(remote: Remote) -> tuple[str, str]:
    """Where the credentials came from, and how to set them right there."""
    n = remote.name
    if remote.settings.get("access_key_id") or remote.settings.get("secret_access_key"):
        return (
            "access_key_id / secret_access_key in the DVC config",
            f"dvc remote modify --local {n} access_key_id ID (and secret_access_key)",
        )
    if remote.settings.get("profile"):
        return f"AWS profile {remote.settings['profile']!r}", f"fix the profile, or dvc remote modify --local {n} profile NAME"
    return (
        "the AWS environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws)",
        f"export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or dvc remote modify --local {n} access_key_id ID (and secret_access_key)",
    )


def _check_s3(remote: Remote, timeout: float) -> str:
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    parts = urlsplit(remote.url)
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    endpoint = remote.settings.get("endpointurl")
    source, set_keys = _credential_source(remote)
    start = time.monotonic()
    try:
        _s3_client(remote, timeout).list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except NoCredentialsError:
        raise ConfigError("no S3 credentials found", path=remote.where, fix=set_keys) from None
    except EndpointConnectionError:
        fix = (
            f"start the S3 server, or correct the endpoint: dvc remote modify {remote.name} endpointurl URL"
            if endpoint
            else "check the network connection to AWS S3"
        )
        raise ConfigError(f"cannot connect to {endpoint or 'AWS S3'}", path=remote.where, fix=fix) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        if code in ("NoSuchBucket", "404"):
            fix = f"create it (aws s3 mb s3://{bucket}), or point the remote at an existing bucket: dvc remote modify {remote.name} url s3://BUCKET/PATH"
            raise ConfigError(f"bucket {bucket!r} does not exist", path=remote.where, fix=fix) from None
        if code in CREDENTIAL_CODES:
            raise ConfigError(f"the S3 server refused the credentials from {source} ({code})", path=remote.where, fix=set_keys) from None
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            fix = f"ask for s3:ListBucket, s3:GetObject and s3:PutObject on s3://{bucket}/{prefix}*, or use other credentials: {set_keys}"
            raise ConfigError(
                f"access denied to s3://{bucket}/{prefix} for the credentials from {source}", path=remote.where, fix=fix
            ) from None
        message = " ".join(str(error.get("Message", "")).split())
        raise ConfigError(
            f"the S3 server answered {code}: {message}", path=remote.where, fix="check the remote's settings: dvc remote list --show-origin"
        ) from None
    except BotoCoreError as exc:  # timeouts, TLS, a malformed endpoint URL
        problem = " ".join(str(exc).split())
        raise ConfigError(
            f"cannot use {endpoint or 'AWS S3'}: {problem}",
            path=remote.where,
            fix=f"check: dvc remote modify {remote.name} endpointurl URL",
        ) from None
    ms = (time.monotonic() - start) * 1000
    return f"{remote.where}: bucket {bucket!r} answered, credentials from {source} accepted ({ms:.0f} ms)"


@click.command()
@click.option("--repo", default=".", show_default=True, type=click.Path(exists=True, file_okay=False), help="the DVC repository")
@click.option("--remote", "name", default=None, help="the remote to check (default: core.remote)")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0.1), help="seconds per connection attempt")
def cli(repo: str, name: str | None, timeout: float) -> None:
    """Check that a DVC remote answers, with the credentials DVC would use."""
    click.echo(check_remote(Path(repo), name, timeout))
