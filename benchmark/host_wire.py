"""The messages between a run and the processes that hold plugins (issue 19).

The run's side is trusted, the other is not: a plugin imported there can replace the code
that builds its replies, and a plain pickle runs whatever its sender names when it is
loaded. So what the run sends is a plain pickle (`send`, `receive`), and what it receives
back is read by `receive_reply`, which builds only data: a pickle that names no class or
function (tuples, lists, dicts, strings, numbers, bytes, None), or, for replies that hold
tensors, a `torch.save` archive read with `weights_only=True`.
"""
from __future__ import annotations

import io
import pickle

_PLAIN, _TENSORS = b"P", b"T"
_DATA = (tuple, list, dict, str, bytes, int, float, bool, type(None))


def send(connection, message) -> None:
    """Plain pickles from the run (multiprocessing's own would pass tensors through torch's
    shared-memory reducer, which hands file descriptors over a second, separately
    authenticated channel)."""
    connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive(connection):
    """A message from the run (only the plugin's side calls this)."""
    return pickle.loads(connection.recv_bytes())


WAKE = ("wake",)  # "look at the shared control block" (benchmark.host_handoff)


def tag(message) -> str | None:
    """A message's kind, its first item, if it is a tuple opening on a string (a reply
    from a plugin's process may be anything)."""
    return message[0] if type(message) is tuple and message and type(message[0]) is str \
        else None


def is_wake(message) -> bool:
    return tag(message) == WAKE[0] and len(message) == 1


def raised_reply(error: BaseException) -> tuple:
    """The reply that stands for an exception raised in a plugin's process."""
    return ("raised", type(error).__name__, str(error))


def raised_exception(reply: tuple) -> Exception:
    """The exception a `raised_reply` stands for, as the run raises it: same class name,
    same text (a class of that name, never one the reply could choose)."""
    return type(reply[1], (Exception,), {})(reply[2])


def _is_data(value) -> bool:
    if isinstance(value, dict):
        return all(_is_data(k) and _is_data(v) for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return all(_is_data(item) for item in value)
    return type(value) in _DATA


def send_reply(connection, message) -> None:
    """A reply to the run: plain data as a pickle, anything else (tensors) as torch.save."""
    if _is_data(message):
        connection.send_bytes(_PLAIN + pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        return
    import torch

    buffer = io.BytesIO()
    torch.save(message, buffer)
    connection.send_bytes(_TENSORS + buffer.getvalue())


class _DataOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a reply named {module}.{name}; replies hold data only")


def receive_reply(connection):
    """A reply from a plugin's process, read without running anything it names; a reply
    that is not data raises pickle.UnpicklingError."""
    data = connection.recv_bytes()
    tag, body = data[:1], data[1:]
    try:
        if tag == _PLAIN:
            return _DataOnly(io.BytesIO(body)).load()
        if tag == _TENSORS:
            import torch

            return torch.load(io.BytesIO(body), weights_only=True)
    except pickle.UnpicklingError:
        raise
    except Exception as error:  # a malformed archive: whatever its reader raised
        raise pickle.UnpicklingError(f"{type(error).__name__}: {error}") from None
    raise pickle.UnpicklingError("a reply in no known format")

