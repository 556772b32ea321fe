"""UDX: reliable, ordered, congestion-controlled streams over UDP, wire-compatible with udx-native.

    sock = await UDXSocket.bind("127.0.0.1", 0)          # sock.address -> (host, port)
    reader, writer = await sock.open_stream(local_id, remote_id, (host, port))
    stream = sock.connect_protocol(protocol, local_id, remote_id, (host, port))   # any asyncio protocol
    stream = sock.create_stream(local_id, firewall=fw)   # learns its remote from the first packet
    await sock.close()

``packet`` is the codec, ``stream`` the sans-I/O state machine, ``congestion``
the sender's window, ``transport`` and ``socket`` the asyncio adapter.
"""

from ..errors import SocketClosed, StreamIdInUse, StreamReset, StreamTimeout
from .socket import UDX, Address, MessageHandler, UDXSocket
from .stream import StreamCore
from .transport import HOLD, Firewall, UDXStream

__all__ = [
    "HOLD",
    "UDX",
    "Address",
    "Firewall",
    "MessageHandler",
    "SocketClosed",
    "StreamCore",
    "StreamIdInUse",
    "StreamReset",
    "StreamTimeout",
    "UDXSocket",
    "UDXStream",
]
