# Windowed alerts over Kafka, written for Wallaroo 0.6's Python API: bank
# transactions come from a Kafka topic as text "user,amount,timestamp_ms"; for
# each user, the total of every 10-second window (sliding by 5 seconds, on the
# transactions' own timestamps) goes through an aggregation, and windows whose
# total is above 2000 or below -2000 become alerts on another Kafka topic (the
# user is the message key).
#
# Run it against a broker on 127.0.0.1:9092 with topics "transactions" and "alerts":
#
#   wallaroo-nb run --application-module examples/alerts_kafka.py --workers 2 \
#       --kafka_source_topic transactions --kafka_source_brokers 127.0.0.1:9092 \
#       --kafka_sink_topic alerts --kafka_sink_brokers 127.0.0.1:9092
#
# A window fires once the stream's event time has passed its end (plus the
# --delay-ms this application takes, default 0, rounded up to whole slides as
# Wallaroo does). As in Wallaroo, each user's windows start at that user's first
# transaction (plus multiples of the slide).
# Ctrl-C stops the app.

import argparse

import wallaroo

THRESHOLD = 2000


def application_setup(args):
    options = parse_options(args)
    source = wallaroo.CustomKafkaSourceCLIParser(args, decode_transaction,
                                                 event_time=transaction_time)
    sink = wallaroo.CustomKafkaSinkCLIParser(args, encode_alert)
    transactions = wallaroo.source("Alerts (windowed)", source).key_by(extract_user)
    windows = (wallaroo.range_windows(wallaroo.seconds(10))
               .with_slide(wallaroo.seconds(5))
               .with_delay(wallaroo.milliseconds(options.delay_ms)))
    pipeline = transactions.to(windows.over(TotalAggregation()))
    return wallaroo.build_application("Alerts (windowed)", pipeline.to_sink(sink))


def parse_options(args):
    parser = argparse.ArgumentParser(prog="alerts_kafka")
    parser.add_argument("--delay-ms", type=int, default=0,
                        help="how long a window waits for late transactions")
    return parser.parse_known_args(args)[0]


class Transaction(object):
    def __init__(self, user, amount, timestamp_ms):
        self.user = user
        self.amount = amount
        self.timestamp_ms = timestamp_ms


class TransactionTotal(object):
    def __init__(self):
        self.total = 0


class Alert(object):
    def __init__(self, kind, user, amount):
        self.kind = kind
        self.user = user
        self.amount = amount

    def __str__(self):
        return "{} Alert for {}: {}".format(self.kind, self.user, self.amount)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode_transaction(bs):
    user, amount, timestamp_ms = bs.decode("utf-8").split(",")
    return Transaction(user, int(amount), int(timestamp_ms))


def transaction_time(transaction):
    return wallaroo.milliseconds(transaction.timestamp_ms)


@wallaroo.key_extractor
def extract_user(transaction):
    return transaction.user


def alert_for(user, total):
    if total > THRESHOLD:
        return Alert("Deposit", user, total)
    elif total < -THRESHOLD:
        return Alert("Withdrawal", user, total)


class TotalAggregation(wallaroo.Aggregation):
    def initial_accumulator(self):
        return TransactionTotal()

    def update(self, transaction, t_total):
        t_total.total = t_total.total + transaction.amount

    def combine(self, t1, t2):
        new_t = TransactionTotal()
        new_t.total = t1.total + t2.total
        return new_t

    def output(self, user, t):
        return alert_for(user, t.total)


@wallaroo.encoder
def encode_alert(alert):
    return (str(alert).encode("utf-8"), alert.user.encode("utf-8"), None)
