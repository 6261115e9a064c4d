"""Bus plumbing of the hybrid top: two AXI4 write managers merged onto one port, and a
small AXI4-Lite manager through which the top's controller and the host reach the SEML
core's control registers.

:class:`AxiWriteArbiter` grants the write address and write data channels one burst at a
time (round robin between the clients when both wait): a granted client's AW and its W
beats up to ``wlast`` pass, then the grant is free again. AXI4 W beats carry no ID, so
holding the grant for the whole burst keeps them in the order of their addresses. The
client index is appended above the client's own ID bits (``awid = {client, id}``) and
write responses go back by that bit. The first granted cycle is combinational: a burst
that finds the bus free loses no cycle.

:class:`AxiWritePacker` holds a slow manager's write bursts until all of their data is in
hand (a burst FIFO, as the "packet mode" of common AXI interconnects): the address goes out
only then, so once granted the burst moves one beat per cycle and does not hold the merged
write channel while its manager produces data (the hand-off writer packs a bus word every
``2 x bytes`` cycles).

:class:`AxiLiteLink` performs one AXI4-Lite read or write at a time for one of its
clients (client 0 first): a client holds ``req_valid`` with its request until ``ack``
(one cycle, combinational with the response handshake, ``rdata`` / ``resp`` valid with
it).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["AxiLiteLink", "AxiWriteArbiter", "AxiWritePacker", "axil_members",
           "write_members"]


def write_members(prefix: str, id_bits: int, data_bits: int, addr_bits: int,
                  manager: bool = True) -> dict:
    """The AXI4 write channels (cocotbext-axi names) of a manager (``manager``) or of the
    subordinate side facing one, as component members named ``prefix + "aw..."`` etc."""
    o, i = (Out, In) if manager else (In, Out)
    return {
        f"{prefix}awid": o(id_bits), f"{prefix}awaddr": o(addr_bits),
        f"{prefix}awlen": o(8), f"{prefix}awsize": o(3), f"{prefix}awburst": o(2),
        f"{prefix}awvalid": o(1), f"{prefix}awready": i(1),
        f"{prefix}wdata": o(data_bits), f"{prefix}wstrb": o(data_bits // 8),
        f"{prefix}wlast": o(1), f"{prefix}wvalid": o(1), f"{prefix}wready": i(1),
        f"{prefix}bid": i(id_bits), f"{prefix}bresp": i(2), f"{prefix}bvalid": i(1),
        f"{prefix}bready": o(1),
    }


def axil_members(prefix: str, addr_bits: int, manager: bool) -> dict:
    """AXI4-Lite channels (32-bit data) of a manager or a subordinate."""
    o, i = (Out, In) if manager else (In, Out)
    return {
        f"{prefix}awaddr": o(addr_bits), f"{prefix}awprot": o(3), f"{prefix}awvalid": o(1),
        f"{prefix}awready": i(1),
        f"{prefix}wdata": o(32), f"{prefix}wstrb": o(4), f"{prefix}wvalid": o(1),
        f"{prefix}wready": i(1),
        f"{prefix}bresp": i(2), f"{prefix}bvalid": i(1), f"{prefix}bready": o(1),
        f"{prefix}araddr": o(addr_bits), f"{prefix}arprot": o(3), f"{prefix}arvalid": o(1),
        f"{prefix}arready": i(1),
        f"{prefix}rdata": i(32), f"{prefix}rresp": i(2), f"{prefix}rvalid": i(1),
        f"{prefix}rready": o(1),
    }


class AxiWriteArbiter(wiring.Component):
    """Two AXI4 write managers (``c0_*``, ``c1_*``, ``id_bits`` ID bits each) onto one
    (``m_axi_*``, ``id_bits + 1`` ID bits: the client index on top). See the module doc.

    The clients' own read channels are not merged here.
    """

    def __init__(self, *, id_bits: int = 1, data_bits: int = 64, addr_bits: int = 32):
        self.id_bits = id_bits
        members = write_members("m_axi_", id_bits + 1, data_bits, addr_bits)
        for k in range(2):
            members.update(write_members(f"c{k}_", id_bits, data_bits, addr_bits,
                                         manager=False))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        c = [{name[3:]: getattr(self, name) for name in self.signature.members
              if name.startswith(f"c{k}_")} for k in range(2)]
        out = {name[6:]: getattr(self, name) for name in self.signature.members
               if name.startswith("m_axi_")}

        locked = Signal()
        owner = Signal()
        last = Signal()          # client of the last grant (round robin)
        aw_done = Signal()       # the locked burst's address has been accepted
        w_done = Signal()        # ... and its last data beat
        # Free bus: client 1 when only it asks, or when both ask and client 0 went last.
        pick = Mux(c[1]["awvalid"] & (~c[0]["awvalid"] | ~last), 1, 0)
        cur = Mux(locked, owner, pick)
        asking = Mux(locked, 1, c[0]["awvalid"] | c[1]["awvalid"])

        def sel(key):
            return Mux(cur, c[1][key], c[0][key])

        m.d.comb += [
            out["awid"].eq(Cat(sel("awid"), cur)),
            out["awaddr"].eq(sel("awaddr")),
            out["awlen"].eq(sel("awlen")),
            out["awsize"].eq(sel("awsize")),
            out["awburst"].eq(sel("awburst")),
            out["awvalid"].eq(asking & sel("awvalid") & ~aw_done),
            out["wdata"].eq(sel("wdata")),
            out["wstrb"].eq(sel("wstrb")),
            out["wlast"].eq(sel("wlast")),
            out["wvalid"].eq(asking & sel("wvalid") & ~w_done),
        ]
        for k in range(2):
            mine = asking & (cur == k)
            m.d.comb += [
                c[k]["awready"].eq(mine & ~aw_done & out["awready"]),
                c[k]["wready"].eq(mine & ~w_done & out["wready"]),
                c[k]["bid"].eq(out["bid"][:self.id_bits]),
                c[k]["bresp"].eq(out["bresp"]),
                c[k]["bvalid"].eq(out["bvalid"] & (out["bid"][self.id_bits] == k)),
            ]
        m.d.comb += out["bready"].eq(Mux(out["bid"][self.id_bits], c[1]["bready"],
                                         c[0]["bready"]))

        aw_fire = out["awvalid"] & out["awready"]
        wlast_fire = out["wvalid"] & out["wready"] & out["wlast"]
        aw_now = aw_done | aw_fire
        w_now = w_done | wlast_fire
        with m.If(asking):
            with m.If(aw_now & w_now):
                m.d.sync += [locked.eq(0), aw_done.eq(0), w_done.eq(0)]
            with m.Else():
                m.d.sync += [locked.eq(1), aw_done.eq(aw_now), w_done.eq(w_now)]
            with m.If(~locked):
                m.d.sync += [owner.eq(pick), last.eq(pick)]
        return m


class AxiWritePacker(wiring.Component):
    """Write channels in (``s_*``, from a manager) -> out (``m_*``), each burst's address
    released only once its last data beat is buffered (see the module doc).

    ``max_burst``: the longest burst of the manager, in beats (the data FIFO holds one).
    Write responses pass straight through.
    """

    def __init__(self, *, id_bits: int = 1, data_bits: int = 64, addr_bits: int = 32,
                 max_burst: int = 16, addresses: int = 4):
        self._widths = (id_bits, data_bits, addr_bits)
        self._depth = max_burst
        self._addresses = addresses
        members = write_members("m_", id_bits, data_bits, addr_bits)
        members.update(write_members("s_", id_bits, data_bits, addr_bits, manager=False))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        id_bits, data_bits, addr_bits = self._widths
        aw_fields = [("awid", id_bits), ("awaddr", addr_bits), ("awlen", 8), ("awsize", 3),
                     ("awburst", 2)]
        w_fields = [("wdata", data_bits), ("wstrb", data_bits // 8), ("wlast", 1)]
        m.submodules.aw = aw = SyncFIFOBuffered(width=sum(w for _, w in aw_fields),
                                                depth=self._addresses)
        m.submodules.w = w = SyncFIFOBuffered(width=sum(w for _, w in w_fields),
                                              depth=self._depth)

        def pack(fifo, fields, side):
            m.d.comb += fifo.w_data.eq(Cat(*(getattr(self, side + n) for n, _ in fields)))

        def unpack(fifo, fields, side):
            lo = 0
            for n, width in fields:
                m.d.comb += getattr(self, side + n).eq(fifo.r_data[lo:lo + width])
                lo += width

        pack(aw, aw_fields, "s_")
        pack(w, w_fields, "s_")
        unpack(aw, aw_fields, "m_")
        unpack(w, w_fields, "m_")
        # bursts whose data is all buffered and whose address has not gone out yet
        ready = Signal(range(self._depth + 2))
        w_in_last = w.w_en & w.w_rdy & self.s_wlast
        aw_out = self.m_awvalid & self.m_awready
        m.d.sync += ready.eq(ready + w_in_last - aw_out)
        # data only behind their address (a subordinate taking W early would see gaps)
        released = Signal(range(self._depth + 2))
        w_out_last = self.m_wvalid & self.m_wready & self.m_wlast
        m.d.sync += released.eq(released + aw_out - w_out_last)
        m.d.comb += [
            aw.w_en.eq(self.s_awvalid), self.s_awready.eq(aw.w_rdy),
            w.w_en.eq(self.s_wvalid), self.s_wready.eq(w.w_rdy),
            self.m_awvalid.eq(aw.r_rdy & (ready != 0)), aw.r_en.eq(aw_out),
            self.m_wvalid.eq(w.r_rdy & (released != 0)),
            w.r_en.eq(self.m_wready & (released != 0)),
            self.s_bid.eq(self.m_bid), self.s_bresp.eq(self.m_bresp),
            self.s_bvalid.eq(self.m_bvalid), self.m_bready.eq(self.s_bready),
        ]
        return m


class AxiLiteLink(wiring.Component):
    """AXI4-Lite manager (``m_axil_*``, ``addr_bits`` address) shared by ``clients``
    requesters, one transaction at a time, client 0 first.

    Members
    -------
    req_valid_k, req_write_k, req_addr_k, req_wdata_k, req_wstrb_k : client ``k``'s request
        (held until its ``ack_k``).
    ack_k : Out(1)
        The transaction of client ``k`` has its response; ``rdata`` / ``resp`` hold it in
        the same cycle.
    """

    def __init__(self, *, clients: int = 2, addr_bits: int = 12):
        self.clients = clients
        self.addr_bits = addr_bits
        members = axil_members("m_axil_", addr_bits, manager=True)
        for k in range(clients):
            members.update({f"req_valid_{k}": In(1), f"req_write_{k}": In(1),
                            f"req_addr_{k}": In(addr_bits), f"req_wdata_{k}": In(32),
                            f"req_wstrb_{k}": In(4), f"ack_{k}": Out(1)})
        members.update({"rdata": Out(32), "resp": Out(2)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        n = self.clients
        client = Signal(range(max(n, 2)))
        write = Signal()
        addr = Signal(self.addr_bits)
        wdata = Signal(32)
        wstrb = Signal(4)
        aw_ok = Signal()
        w_ok = Signal()
        ack = Signal()
        m.d.comb += [
            self.m_axil_awaddr.eq(addr), self.m_axil_araddr.eq(addr),
            self.m_axil_awprot.eq(0), self.m_axil_arprot.eq(0),
            self.m_axil_wdata.eq(wdata), self.m_axil_wstrb.eq(wstrb),
        ]
        for k in range(n):
            m.d.comb += getattr(self, f"ack_{k}").eq(ack & (client == k))

        with m.FSM():
            with m.State("IDLE"):
                for k in reversed(range(n)):    # the last assignment (client 0) wins
                    with m.If(getattr(self, f"req_valid_{k}")):
                        m.d.sync += [
                            client.eq(k),
                            write.eq(getattr(self, f"req_write_{k}")),
                            addr.eq(getattr(self, f"req_addr_{k}")),
                            wdata.eq(getattr(self, f"req_wdata_{k}")),
                            wstrb.eq(getattr(self, f"req_wstrb_{k}")),
                            aw_ok.eq(0), w_ok.eq(0),
                        ]
                any_req = Cat(*(getattr(self, f"req_valid_{k}") for k in range(n))).any()
                with m.If(any_req):
                    m.next = "START"
            with m.State("START"):
                with m.If(write):
                    m.next = "WRITE"
                with m.Else():
                    m.next = "READ"
            with m.State("WRITE"):
                m.d.comb += [self.m_axil_awvalid.eq(~aw_ok), self.m_axil_wvalid.eq(~w_ok)]
                aw_now = aw_ok | self.m_axil_awready
                w_now = w_ok | self.m_axil_wready
                m.d.sync += [aw_ok.eq(aw_now), w_ok.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += [self.m_axil_bready.eq(1), self.resp.eq(self.m_axil_bresp),
                             ack.eq(self.m_axil_bvalid)]
                with m.If(self.m_axil_bvalid):
                    m.next = "IDLE"
            with m.State("READ"):
                m.d.comb += self.m_axil_arvalid.eq(1)
                with m.If(self.m_axil_arready):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [self.m_axil_rready.eq(1), self.rdata.eq(self.m_axil_rdata),
                             self.resp.eq(self.m_axil_rresp), ack.eq(self.m_axil_rvalid)]
                with m.If(self.m_axil_rvalid):
                    m.next = "IDLE"
        return m

