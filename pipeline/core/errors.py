"""The one exception type for errors a user can cause (paths, datasets, stores, weights).

Its message says what is wrong, where, and what to do. The CLI prints it as one red line and exits with code 2.
Programming errors are not wrapped: they raise normally.
"""


class MdmfError(Exception):
    """A problem with the user's input that the user can fix; the message names the fix."""


def dataclass_from_dict(cls, data: dict, what: str):
    """`cls(**data)` for a config dataclass, with unknown keys as a user error naming the known ones.

    Saved configs (run folders, presets) come from files a user can edit, so a typo must say what is allowed.
    """
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise MdmfError(f"unknown {what} settings {sorted(unknown)}; known: {sorted(known)}")
    return cls(**data)
