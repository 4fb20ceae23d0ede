"""Readers and atomic writers for every file format rerank-lab reads or writes."""
