"""The one exception type the stages turn into a clean one-line error and a non-zero exit."""


class PipelineError(RuntimeError):
    """A user-facing failure: the message names the file, key or URL and says what to do."""
