"""The Hypercore wire, sans-I/O: bytes in, events and bytes out; no sockets, clocks or asyncio."""
