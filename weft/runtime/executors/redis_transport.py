"""Kombu's Redis transport, as Weft's agents use it: a lost connection does not kill the agent.

When the connection to Redis drops while calls run, Celery closes the
channel, and kombu's QoS of that channel then reaches Redis through the
closed connection twice: to put the calls it holds unacknowledged back on
the queue, and, once each call ends, to acknowledge it. Both fail with an
AttributeError that Celery takes for an unrecoverable error: the agent
exits. Here a closed channel's QoS only forgets such deliveries: Redis gives
their calls to an agent again after the visibility timeout (a copy of a call
that ran finds its claim and is dropped), and Celery reconnects.
"""

from __future__ import annotations

from kombu.transport import redis, virtual


class QoS(redis.QoS):
    def _closed(self) -> bool:
        transport = self.channel.connection
        return transport is None or transport.client is None

    def restore_unacked_once(self, stderr=None):
        if self._closed():
            return None
        return super().restore_unacked_once(stderr)

    def ack(self, delivery_tag):
        if self._closed():
            return virtual.QoS.ack(self, delivery_tag)  # this process's record of it only
        return super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if self._closed():
            return virtual.QoS.ack(self, delivery_tag)
        return super().reject(delivery_tag, requeue)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
