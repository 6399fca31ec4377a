"""The one exception type for user mistakes: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """A problem the user can fix (bad file, wrong variant, missing dependency); the message says how."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut at a word boundary: library messages run long."""
    lines = str(e).strip().splitlines()
    text = lines[0].strip() if lines else type(e).__name__
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:(") + " ..."
    return text


def unreadable_model(path, runtime: str, exc: BaseException) -> UserError:
    """A model file a runtime cannot load (truncated, damaged, or not what its name says)."""
    from pathlib import Path

    why = first_line(Exception(str(exc).replace(str(path), Path(path).name)), 120)  # the path is said once
    return UserError(f"{runtime} cannot load '{path}' ({type(exc).__name__}: {why}): the file is damaged or "
                     "truncated; export the bundle again")
