"""Walk a folder tree the user controls: symlinks followed, each real directory once.

Model folders and workflow folders are often symlinked (shared drives, a second ComfyUI), and a
link pointing back up the tree would make a plain `os.walk(followlinks=True)` list the same files
over and over (2**40 times for two such links) until the path grows too long.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator


def printable(name: str) -> str:
    """A file system name as text: bytes that are not UTF-8 shown as U+FFFD (a report, a JSON
    file or the console cannot carry the undecodable bytes Python keeps as lone surrogates)."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that came from text, not from a file system name
        return name.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def walk_files(top: str, skip_dir: Callable[[str], bool] = lambda name: False
               ) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(path relative to top with '/', entry) for every file under top, each real directory visited once.

    In no particular order: callers that show the files sort them.
    """
    seen: set[tuple[int, int]] = set()
    stack = [(top, "")]
    while stack:
        path, rel = stack.pop()
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in seen:
                continue  # reached again through a link
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue  # unreadable, or gone since its parent was listed
        for e in entries:
            sub = f"{rel}/{e.name}" if rel else e.name
            try:
                if e.is_dir():
                    if not skip_dir(e.name):
                        stack.append((e.path, sub))
                elif e.is_file():
                    yield sub, e
            except OSError:
                continue  # a broken link or a file gone since the listing
