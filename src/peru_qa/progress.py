"""Progress bars for long work (indexing), on stderr and silent when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Callable


def progress_bar(unit: str = "file", desc: str = "indexing") -> Callable[[int, int, str], None]:
    """A `ProgressFn` (done, total, what is happening now) drawing one tqdm bar."""
    from tqdm import tqdm

    state: dict = {}

    def update(done: int, total: int, what: str) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, unit=unit, desc=desc, leave=False, disable=None, mininterval=0.5)
        # Within one file (OCR of a long scan) only `what` changes: redraw it then, or the bar looks stuck.
        bar.set_postfix_str(what[:48], refresh=done == bar.n)
        bar.update(done - bar.n)
        if done >= total:  # a next phase (sentences, then words) gets a bar of its own
            bar.close()
            state.pop("bar")

    return update
