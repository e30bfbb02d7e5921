"""Twisted protocols that turn bytes from the network into frames for an IMessageSink."""
