"""A task's traceback as its reader wants it: from the user's own code on.

The frames of nbflow and asyncio around a task (the engine, the attempt, the event loop)
are left out of the traceback the dashboard's task table shows.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import nbflow


def user_traceback(text: str) -> str:
    """``text`` (a formatted traceback) without the frames of nbflow and asyncio themselves.

    What is left starts at the user's task function, which is what a reader wants to see.
    The text comes back unchanged when it does not look like a traceback or when every
    frame would go.
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Traceback"):
        return text
    kept, drop = [lines[0]], False
    dropped = 0
    for line in lines[1:]:
        if line.startswith('  File "'):
            path = line[8 : line.find('"', 8)]
            drop = path.startswith(_INTERNAL)
            dropped += drop
            if not drop:
                kept.append(line)
        elif line.startswith("    ") and drop:
            continue
        else:
            drop = False
            kept.append(line)
    if not dropped or not any(line.startswith('  File "') for line in kept):
        return text
    return "\n".join(kept)


# Frames from these directories are the machinery around a task, not the user's code.
_INTERNAL = tuple(
    str(Path(module.__file__ or ".").resolve().parent) + os.sep for module in (asyncio, nbflow)
)
