"""The Kafka wire protocol: framing, the kio codec and the table of supported API versions.

Nothing here knows what a topic is; it turns bytes into typed requests and typed responses into
bytes, and says which API versions the broker speaks.
"""
