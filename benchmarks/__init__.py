"""Benchmarks behind `footfall bench`: figures against a baseline measured in the same run."""


def three_columns(rows: list[tuple[str, str, str]]) -> str:
    """Rows of (label, ours, baseline) as aligned text."""
    width = max(len(a) for a, _, _ in rows)
    col = max(len(b) for _, b, _ in rows)
    return "\n".join(f"{a:<{width}}  {b:<{col}}  {c}".rstrip() for a, b, c in rows)
