"""The one exception type for errors a user can cause (paths, datasets, stores, weights).

Its message says what is wrong, where, and what to do. The CLI prints it as one red line and exits with code 2.
Programming errors are not wrapped: they raise normally.
"""


class MdmfError(Exception):
    """A problem with the user's input that the user can fix; the message names the fix."""
