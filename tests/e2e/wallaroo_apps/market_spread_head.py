"""Market spread, written against Wallaroo's development head: the two sources are
named in ``--in "Orders@host:port,Market Data@host:port"`` and found by name.
Wire formats as in market_spread_06.py."""

import struct
import time

import wallaroo


def application_setup(args):
    inputs = {name: (host, port) for name, host, port in wallaroo.tcp_parse_input_addrs(args)}
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    orders = wallaroo.source("Orders", wallaroo.TCPSourceConfig(
        "Orders", inputs["Orders"][0], inputs["Orders"][1], decode_order))
    market_data = wallaroo.source("Market Data", wallaroo.TCPSourceConfig(
        "Market Data", inputs["Market Data"][0], inputs["Market Data"][1], decode_market_data))
    pipeline = (orders.merge(market_data)
                .key_by(extract_symbol)
                .to(check_market_data)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_order_result)))
    return wallaroo.build_application("Market Spread", pipeline)


class SymbolData(object):
    def __init__(self, last_bid=0.0, last_offer=0.0, should_reject_trades=True):
        self.last_bid = last_bid
        self.last_offer = last_offer
        self.should_reject_trades = should_reject_trades


@wallaroo.key_extractor
def extract_symbol(data):
    return data["symbol"]


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_order(bs):
    kind, side, account, order_id, symbol, qty, price, _t = struct.unpack(
        ">BBI6s4sdd21s", bs[:53])
    assert kind == 1, "not an order"
    return {"order": True, "side": side, "account": account, "order_id": order_id,
            "symbol": symbol, "qty": qty, "price": price}


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_market_data(bs):
    kind, symbol, _t, bid, offer = struct.unpack(">B4s21sdd", bs[:42])
    assert kind == 2, "not market data"
    return {"order": False, "symbol": symbol, "bid": bid, "offer": offer,
            "mid": (bid + offer) / 2.0}


@wallaroo.state_computation(name="Check Market Data", state=SymbolData)
def check_market_data(data, state):
    if data["order"]:
        if state.should_reject_trades:
            return dict(data, bid=state.last_bid, offer=state.last_offer,
                        ts=int(time.time() * 100000))
        return None
    difference = data["offer"] - data["bid"]
    state.should_reject_trades = difference >= 0.05 or difference / data["mid"] >= 0.05
    state.last_bid, state.last_offer = data["bid"], data["offer"]
    return None


@wallaroo.encoder
def encode_order_result(r):
    p = struct.pack(">BI6s4sddddQ", r["side"], r["account"], r["order_id"], r["symbol"],
                    r["qty"], r["price"], r["bid"], r["offer"], r["ts"])
    return struct.pack(">I{}s".format(len(p)), len(p), p)
