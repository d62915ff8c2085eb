"""Progress lines, and errors cut down to a line for the log and the report."""

import time


def log(message: str) -> None:
    """Print a timestamped progress line."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def first_line(error: BaseException | str) -> str:
    """The ``ERROR`` line of a failure's output, else its first line."""
    text = str(error).strip()
    for line in text.splitlines():
        if line.startswith("ERROR"):
            return line
    return text.splitlines()[0] if text else type(error).__name__


def last_lines(error: BaseException | str, n: int = 3) -> str:
    """The last ``n`` non-blank lines of a failure's output, on one line."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])
