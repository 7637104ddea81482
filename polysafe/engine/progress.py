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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Bar(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), TextColumn("{task.fields[rate]}", style="progress.data.speed"),
                       console=console, transient=False)
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
            self.bar.update(task.id, advance=count, tokens=tokens, rate=token_rate(tokens, task.elapsed))

    def finish(self, phase: str) -> None:
        if phase in self.tasks:
            task = self.tasks[phase]
            self.bar.update(task, completed=self.bar.tasks[task].total)


def token_rate(tokens: int, seconds: float | None) -> str:
    return f"{tokens / seconds:,.0f} tokens/s" if tokens and seconds else ""

