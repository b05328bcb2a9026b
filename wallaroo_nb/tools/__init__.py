"""Command-line tools around a running application: send data in, receive results."""
