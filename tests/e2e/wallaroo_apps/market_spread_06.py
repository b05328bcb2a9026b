"""Market spread, written against Wallaroo 0.6.0/0.6.1's API: two TCP sources (orders,
then market data, in the order of ``--in``), merged and keyed by symbol. Market data
updates a symbol's state (reject trades when the spread is wide); an order for a
symbol whose state says reject comes out as a framed binary order result.

Orders: ">BBI6s4sdd21s" (fix type 1, side, account, order id, symbol, quantity, price,
time); market data: ">B4s21sdd" (fix type 2, symbol, time, bid, offer)."""

import struct
import time

import wallaroo

ORDER, MARKET_DATA = 1, 2


def application_setup(args):
    (order_host, order_port), (nbbo_host, nbbo_port) = wallaroo.tcp_parse_input_addrs(args)[:2]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    orders = wallaroo.source("Orders",
                             wallaroo.TCPSourceConfig(order_host, order_port, decode_order))
    nbbo = wallaroo.source("Market Data",
                           wallaroo.TCPSourceConfig(nbbo_host, nbbo_port, decode_nbbo))
    pipeline = (orders.merge(nbbo)
                .key_by(symbol_of)
                .to(check)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_result)))
    return wallaroo.build_application("Market Spread", pipeline)


class SymbolState(object):
    def __init__(self):
        self.bid = 0.0
        self.offer = 0.0
        self.reject = True


class Order(object):
    is_order = True

    def __init__(self, fields):
        (_, self.side, self.account, self.order_id, self.symbol, self.qty, self.price,
         self.time) = fields


class Nbbo(object):
    is_order = False

    def __init__(self, fields):
        _, self.symbol, self.time, self.bid, self.offer = fields
        self.mid = (self.bid + self.offer) / 2.0


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_order(bs):
    fields = struct.unpack(">BBI6s4sdd21s", bs[:53])
    if fields[0] != ORDER:
        raise ValueError("not an order: are the senders the wrong way round?")
    return Order(fields)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_nbbo(bs):
    fields = struct.unpack(">B4s21sdd", bs[:42])
    if fields[0] != MARKET_DATA:
        raise ValueError("not market data: are the senders the wrong way round?")
    return Nbbo(fields)


@wallaroo.key_extractor
def symbol_of(msg):
    return msg.symbol


@wallaroo.state_computation(name="Check Market Data", state=SymbolState)
def check(msg, state):
    if msg.is_order:
        if state.reject:
            return (msg, state.bid, state.offer, int(time.time() * 100000))
        return None
    spread = msg.offer - msg.bid
    state.bid, state.offer = msg.bid, msg.offer
    state.reject = spread >= 0.05 or spread / msg.mid >= 0.05
    return None


@wallaroo.encoder
def encode_result(result):
    order, bid, offer, ts = result
    body = struct.pack(">BI6s4sddddQ", order.side, order.account, order.order_id, order.symbol,
                       order.qty, order.price, bid, offer, ts)
    return struct.pack(">I", len(body)) + body
