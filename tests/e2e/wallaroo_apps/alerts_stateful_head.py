"""Stateful alerts, written against Wallaroo's development head (named generator
source); the transactions and thresholds are those of alerts_stateful_06.py."""

import wallaroo


def application_setup(args):
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    source = wallaroo.GenSourceConfig("Alerts (stateful)", TransactionsGenerator())
    pipeline = (wallaroo.source("Alerts (stateful)", source)
                .key_by(extract_user)
                .to(check_transaction_total)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode_alert)))
    return wallaroo.build_application("Alerts (stateful)", pipeline)


class Transaction(object):
    def __init__(self, user, amount):
        self.user, self.amount = user, amount


class TransactionTotal(object):
    def __init__(self):
        self.total = 0


@wallaroo.key_extractor
def extract_user(transaction):
    return transaction.user


@wallaroo.state_computation(name="check transaction total", state=TransactionTotal)
def check_transaction_total(transaction, state):
    state.total += transaction.amount
    kind = "Deposit" if state.total > 2000 else "Withdrawal" if state.total < -2000 else None
    if kind:
        return "{} Alert for {}: {}".format(kind, transaction.user, state.total)


@wallaroo.encoder
def encode_alert(alert):
    return "{}\n".format(alert).encode()


class TransactionsGenerator(object):
    def __init__(self):
        self.users = ["Fido", "Rex", "Dr. Whiskers", "Feathers", "Mountaineer"]
        self.user_totals = [1, 0, 0, 0, 0]
        self.user_idx = 0

    def initial_value(self):
        return Transaction("Fido", 1)

    def apply(self, v):
        amount = ((v.amount * 2305843009213693951) + 7) % 2500 - 1250
        self.user_idx = (self.user_idx + 1) % len(self.users)
        total = self.user_totals[self.user_idx]
        if total > 5000:
            amount = -6000
        elif total < -5000:
            amount = 6000
        self.user_totals[self.user_idx] = total + amount
        return Transaction(self.users[self.user_idx], amount)
