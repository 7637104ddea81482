"""Progress reporting: the engine calls these hooks; the CLI shows them as rich progress bars."""

from __future__ import annotations


class Progress:
    """No-op progress. Subclass to display."""

    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, phase: str, count: int = 1) -> None:
        pass

    def finish(self, phase: str) -> None:
        pass


class RichProgress(Progress):
    def __init__(self, console=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Bar(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start(self, phase: str, total: int) -> None:
        self.tasks[phase] = self.bar.add_task(phase, total=total)

    def advance(self, phase: str, count: int = 1) -> None:
        if phase in self.tasks:
            self.bar.advance(self.tasks[phase], count)

    def finish(self, phase: str) -> None:
        if phase in self.tasks:
            task = self.tasks[phase]
            self.bar.update(task, completed=self.bar.tasks[task].total)
