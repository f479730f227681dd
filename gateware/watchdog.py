"""Watchdog of the protocol engine: one counter that times out both the host (idle inside a frame)
and the accelerator (no progress)."""
from amaranth import Module, Signal, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Watchdog", "watch_limit"]


def watch_limit(clocks):
    """Watchdog count for a limit of ``clocks``: ``clocks - 1`` rounded down to its four most
    significant set bits (at most 1/8 shorter), so expiry is a 4-input AND of counter bits."""
    value = clocks - 1
    keep = 0
    for i in reversed(range(value.bit_length())):
        if value >> i & 1 and bin(keep).count("1") < 4:
            keep |= 1 << i
    return keep


class Watchdog(wiring.Component):
    """Two timeouts on one up-counter.

    The counter is cleared on progress, while nothing is watched and when the party waited for
    changes (host <-> accelerator); it expires when it has all the bits of the rounded limit
    (:func:`watch_limit`) set, which first happens exactly at that count. The watching state
    must leave when an expiry pulse comes (the counter keeps counting otherwise).

    Parameters
    ----------
    rx_timeout : int
        Clocks the host may stay silent inside a frame (16 .. 2**32-1).
    accel_timeout : int
        Clocks the accelerator may make no progress (16 .. 2**32-1).

    Attributes
    ----------
    i_watch : In(1)
        A waiting state is active.
    i_wait_rx : In(1)
        What is waited for: 1 the host (a received byte), 0 the accelerator.
    i_progress : In(1)
        The party waited for made progress this clock.
    o_rx_expired : Out(1)
        The host has been silent for the rx limit (level while it lasts).
    o_accel_expired : Out(1)
        The accelerator has made no progress for the accelerator limit.
    """
    i_watch: In(1)
    i_wait_rx: In(1)
    i_progress: In(1)
    o_rx_expired: Out(1)
    o_accel_expired: Out(1)

    def __init__(self, rx_timeout, accel_timeout):
        self.rx_timeout = rx_timeout
        self.accel_timeout = accel_timeout
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        t_rx, t_accel = watch_limit(self.rx_timeout), watch_limit(self.accel_timeout)
        count = Signal(max(t_rx, t_accel).bit_length())
        was_wait_rx = Signal()
        m.d.sync += was_wait_rx.eq(self.i_wait_rx)
        # The clear condition is registered (``restart``): the progress inputs come through the
        # accelerator's hand-shakes and were the end of the iCEBreaker build's critical path.
        # The count restarts at 1 one clock later, so from then on it equals the count cleared
        # at once; in the clock in between it may be the old count + 1, and ``restart`` blocks
        # the expiry there (the cleared count would be 0). Expiry is unchanged to the clock.
        restart = Signal(init=1)
        m.d.sync += restart.eq(self.i_progress | ~self.i_watch | (self.i_wait_rx != was_wait_rx))
        with m.If(restart):
            m.d.sync += count.eq(1)
        with m.Else():
            m.d.sync += count.eq(count + 1)

        def reached(limit):
            return Cat(*(count[i] for i in range(len(count)) if limit >> i & 1)).all() & ~restart

        m.d.comb += [
            self.o_rx_expired.eq(self.i_watch & self.i_wait_rx & was_wait_rx & reached(t_rx)),
            self.o_accel_expired.eq(self.i_watch & ~self.i_wait_rx & ~was_wait_rx
                                    & reached(t_accel)),
        ]
        return m
