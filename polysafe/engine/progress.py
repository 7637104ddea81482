"""Progress reporting: the engine calls these hooks; the CLI shows them as rich progress bars."""

from __future__ import annotations


class Progress:
    """No-op progress. Subclass to display."""

    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, phase: str, count: int = 1, tokens: int = 0) -> None:
        """`tokens`: generated tokens in what just finished, when the phase generates (shown as tokens/s)."""

    def finish(self, phase: str) -> None:
        pass


class RichProgress(Progress):
    def __init__(self, console=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        self.bar = Bar(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("{task.fields[rate]}", style="progress.data.speed"), console=console, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, phase: str, total: int) -> None:
        self.tasks[phase] = self.bar.add_task(phase, total=total, tokens=0, rate="")

    def advance(self, phase: str, count: int = 1, tokens: int = 0) -> None:
        if phase in self.tasks:
            task = self.bar.tasks[self.tasks[phase]]
            tokens += task.fields["tokens"]
            done = task.completed + count
            self.bar.update(task.id, advance=count, tokens=tokens,
                            rate=rate_and_eta(tokens, done, task.total or 0, task.elapsed))

    def finish(self, phase: str) -> None:
        if phase in self.tasks:
            task = self.tasks[phase]
            self.bar.update(task, completed=self.bar.tasks[task].total)


def token_rate(tokens: int, seconds: float | None) -> str:
    return f"{tokens / seconds:,.0f} tokens/s" if tokens and seconds else ""


def rate_and_eta(tokens: int, done: int, total: int, seconds: float | None) -> str:
    """Tokens/s and the time left at the pace so far. The engine starts a phase once the model is loaded, so
    neither counts loading."""
    if not seconds or not done:
        return ""
    left = max(0.0, (total - done) * seconds / done)
    minutes, secs = divmod(round(left), 60)
    eta = f"ETA {minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"ETA {minutes}:{secs:02d}"
    rate = token_rate(tokens, seconds)
    return f"{rate} · {eta}" if rate else eta

