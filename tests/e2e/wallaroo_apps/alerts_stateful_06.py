"""Stateful alerts, written against Wallaroo 0.6.0/0.6.1's API: an endless generator of
five users' transactions, keyed by user; a running total per user above 2000 or below
-2000 makes an alert line."""

import wallaroo

USERS = ["Fido", "Rex", "Dr. Whiskers", "Feathers", "Mountaineer"]


def application_setup(args):
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    transactions = wallaroo.source("Alerts (stateful)", wallaroo.GenSourceConfig(Bank()))
    pipeline = (transactions
                .key_by(user_of)
                .to(running_total)
                .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, alert_line)))
    return wallaroo.build_application("Alerts (stateful)", pipeline)


class Account(object):
    def __init__(self):
        self.balance = 0


@wallaroo.key_extractor
def user_of(transaction):
    return transaction[0]


@wallaroo.state_computation(name="check transaction total", state=Account)
def running_total(transaction, account):
    user, amount = transaction
    account.balance += amount
    if account.balance > 2000:
        return "Deposit Alert for %s: %d" % (user, account.balance)
    if account.balance < -2000:
        return "Withdrawal Alert for %s: %d" % (user, account.balance)


@wallaroo.encoder
def alert_line(text):
    return (text + "\n").encode()


class Bank(object):
    """Users in turn; an amount that would push a user past +-5000 is swapped for a
    correction of -6000 or +6000, so every user keeps crossing the thresholds."""

    def __init__(self):
        self.turn = 0
        self.totals = [1, 0, 0, 0, 0]

    def initial_value(self):
        return ("Fido", 1)

    def apply(self, last):
        amount = (last[1] * 2305843009213693951 + 7) % 2500 - 1250
        self.turn = (self.turn + 1) % len(USERS)
        total = self.totals[self.turn]
        if total > 5000:
            amount = -6000
        elif total < -5000:
            amount = 6000
        self.totals[self.turn] = total + amount
        return (USERS[self.turn], amount)
