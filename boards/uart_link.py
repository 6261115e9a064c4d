"""The framed UART protocol between a host and the ULX3S top, host side.

One request, one response; the host waits for each response before the next
request. All integers are little-endian.

Request::

    0xC5  CMD  ADDR[4]  LEN[4]  [DATA[LEN] for WRITE_MEM]  CHK

Response::

    STATUS  [PAYLOAD, only when STATUS == OK]  CHK

``CHK`` is the sum modulo 256 of every byte after ``0xC5`` (request) or of every
byte before it (response).

| CMD | name | ADDR | LEN | response payload |
|---|---|---|---|---|
| 0x01 | INFO | 0 | 0 | ``b"CFUL"``, protocol version, bus bytes, 2 reserved, RAM bytes[4] |
| 0x02 | WRITE_MEM | byte address | byte count | (none) |
| 0x03 | READ_MEM | byte address | byte count | LEN bytes |
| 0x04 | WRITE_REG | CSR offset | value | (none) |
| 0x05 | READ_REG | CSR offset | 0 | value[4] |

Status codes are :class:`LinkStatus`. The on-chip RAM can only be accessed while
the core is not running (``BUSY`` otherwise); CSRs always. A request that stops
arriving midway is dropped by the device after an idle timeout, so a host that
died mid-frame never leaves the link stuck.

:class:`UartLink` speaks this protocol over any object with pyserial's
``read(n)`` / ``write(data)`` (a ``serial.Serial``, or the simulated line of
:class:`boards.driver.SimUartPort`).
"""

from __future__ import annotations

import enum
import struct

__all__ = ["INFO_MAGIC", "PROTOCOL_VERSION", "SYNC", "Command", "LinkError", "LinkStatus",
           "UartLink", "checksum", "request"]

SYNC = 0xC5
INFO_MAGIC = b"CFUL"
PROTOCOL_VERSION = 1
#: Bytes of the INFO payload.
INFO_BYTES = 12


class Command(enum.IntEnum):
    INFO = 0x01
    WRITE_MEM = 0x02
    READ_MEM = 0x03
    WRITE_REG = 0x04
    READ_REG = 0x05


class LinkStatus(enum.IntEnum):
    OK = 0
    BAD_CHECKSUM = 1   #: the request's checksum did not match (nothing was executed,
    #:                    except the bytes of a WRITE_MEM already written)
    BAD_COMMAND = 2    #: unknown command byte
    RANGE = 3          #: a memory access reaches past the on-chip RAM
    BUSY = 4           #: a memory access while the core runs
    CSR_ERROR = 5      #: the core's control registers answered SLVERR (unmapped offset)


class LinkError(RuntimeError):
    """The UART link failed: no or short response, bad checksum, or an error status."""

    def __init__(self, message, status: LinkStatus | None = None):
        super().__init__(message)
        self.status = status


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def request(cmd: Command, addr: int = 0, length: int = 0, data: bytes = b"") -> bytes:
    """The bytes of one request frame."""
    body = struct.pack("<BII", int(cmd), addr & 0xFFFFFFFF, length & 0xFFFFFFFF) + bytes(data)
    return bytes([SYNC]) + body + bytes([checksum(body)])


class UartLink:
    """Host side of the protocol over a serial port.

    Parameters
    ----------
    port : object
        ``read(n) -> bytes`` (may return fewer bytes on its timeout) and ``write(data)``.
    chunk : int
        Largest memory transfer per request (keeps each frame short).
    """

    def __init__(self, port, *, chunk: int = 4096):
        self.port = port
        self.chunk = chunk

    def _read_exact(self, n: int, what: str) -> bytes:
        data = b""
        while len(data) < n:
            got = self.port.read(n - len(data))
            if not got:
                raise LinkError(f"UART link: no response from the board while reading {what} "
                                f"({len(data)} of {n} bytes); check the port, the baud rate "
                                f"and that the bitstream is loaded")
            data += got
        return data

    def transact(self, cmd: Command, addr: int = 0, length: int = 0, data: bytes = b"",
                 reply_bytes: int = 0) -> bytes:
        """Send one request and return the response payload (``reply_bytes`` long)."""
        self.port.write(request(cmd, addr, length, data))
        status = self._read_exact(1, f"the status of {cmd.name}")[0]
        try:
            status = LinkStatus(status)
        except ValueError:
            raise LinkError(f"UART link: {cmd.name} answered with unknown status {status:#x}") \
                from None
        payload = b""
        if status == LinkStatus.OK:
            payload = self._read_exact(reply_bytes, f"the payload of {cmd.name}")
        chk = self._read_exact(1, f"the checksum of {cmd.name}")[0]
        if chk != checksum(bytes([status]) + payload):
            raise LinkError(f"UART link: bad response checksum for {cmd.name}")
        if status != LinkStatus.OK:
            raise LinkError(f"UART link: {cmd.name} at {addr:#x} (length {length}) failed with "
                            f"{status.name}", status)
        return payload

    def info(self) -> dict:
        payload = self.transact(Command.INFO, reply_bytes=INFO_BYTES)
        magic, version, bus_bytes, _, _, ram = struct.unpack("<4sBBBBI", payload)
        if magic != INFO_MAGIC:
            raise LinkError(f"UART link: the board answered INFO with magic {magic!r}, not "
                            f"{INFO_MAGIC!r}: is the ConvForge bitstream loaded?")
        if version != PROTOCOL_VERSION:
            raise LinkError(f"UART link: protocol version {version} on the board, "
                            f"{PROTOCOL_VERSION} here; rebuild the bitstream")
        return {"ram_bytes": ram, "bus_bytes": bus_bytes, "version": version}

    def write_mem(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        for at in range(0, len(data), self.chunk):
            part = data[at:at + self.chunk]
            self.transact(Command.WRITE_MEM, addr + at, len(part), part)

    def read_mem(self, addr: int, length: int) -> bytes:
        out = b""
        for at in range(0, length, self.chunk):
            n = min(self.chunk, length - at)
            out += self.transact(Command.READ_MEM, addr + at, n, reply_bytes=n)
        return out

    def write_reg(self, offset: int, value: int) -> None:
        self.transact(Command.WRITE_REG, offset, value)

    def read_reg(self, offset: int) -> int:
        return struct.unpack("<I", self.transact(Command.READ_REG, offset, reply_bytes=4))[0]
