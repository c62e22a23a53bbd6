# MQTT connection with the stored credential, on umqtt.simple. A refused CONNECT is a
# RejectedError with the CONNACK code, never a retry loop.
from micropython import const
from dynreg import ConfigError, NetworkError, ProtocolError, RejectedError, busy, clock, codec, net
from dynreg import load_ca, options, say

MAX_PACKET = const(8192)  # bytes: a larger incoming MQTT packet is refused before it is read
DEFAULTS = {"ca": None, "mqtt_url": None, "keepalive": 60, "timeout_ms": 10000, "max_packet": MAX_PACKET,
            "log": print, "tls_cache": None}


def endpoint(info, broker, url=None):
    # (host, port, tls) of the broker: the option, the info's mqtt_url, or the cloud's own
    # (`broker`, from its module), which all three clouds serve over TLS on 8883.
    url = url or info.mqtt_url
    if url:
        scheme, host, port, _ = codec.split_url(url)
        return host, port, scheme == "mqtts"
    return broker, 8883, True


class _Link:
    # umqtt.simple's `ssl` object (1.5 and later hand it their TCP socket after the connect),
    # given for plain TCP too, and then what umqtt reads and writes. Every read and write ends
    # by a deadline: an operation's (the CONNECT to its CONNACK, wait_for, a gateway request),
    # else timeout_ms for each write and for the rest of a packet once its first byte is in,
    # and for a packet's first byte in a blocking read 1.5 keepalive intervals (a broker that
    # heard no ping by then has hung up). Each incoming packet's length is read ahead of umqtt
    # and checked against max_packet before umqtt allocates it: a PUBLISH over it is read,
    # discarded and given to `dropped` (a note: what to do with it is the caller's), umqtt never
    # sees it (a QoS 1 one acknowledged, or the broker sends it again: Azure until its TTL); any
    # other packet over it is a ProtocolError.
    # `lost`: the connection failed under a read or a write (an error, its end, a packet cut short).
    def __init__(self, ctx, deadline, timeout_ms, keepalive, max_packet, dropped):
        self.ctx = ctx
        self.until = deadline
        self.timeout_ms = timeout_ms
        self.idle_ms = keepalive * 1500 if keepalive else None
        self.max_packet = max_packet
        self.dropped = dropped
        self.left = 0  # bytes of the current packet's body not read yet
        self.ahead = b""  # its length bytes, read ahead of umqtt
        self.lost = False

    def wrap_socket(self, sock, server_hostname=None):
        net.nodelay(sock)  # umqtt writes CONNECT in small pieces: no Nagle wait between them
        self.stream = net.Bounded(sock, self.until)
        self.tls = net.wrap(self.stream, self.ctx, server_hostname) if self.ctx else None
        self.io = self.tls or self.stream
        return self

    def _bound(self, ms):
        deadline = net.deadline_in(ms) if ms is not None else None
        if self.until is not None and (deadline is None or clock.ticks_diff(self.until, deadline) < 0):
            deadline = self.until
        self.stream.deadline = deadline  # None only for a keepalive of 0: the application asked to wait

    def setblocking(self, flag):
        self.stream.wait = flag

    def read(self, n):
        if n and not (self.ahead or self.left):
            first = self._start()
            return first + self.read(n - 1) if first else first  # None: nothing yet; b"": closed
        data = self.ahead[:n]
        self.ahead = self.ahead[n:]
        n -= len(data)
        if n:
            if n > self.left:
                raise ProtocolError("malformed MQTT packet")
            self._bound(self.timeout_ms)
            body = self._in(n)
            self.left -= len(body or b"")
            data = data + body if data else body
        return data

    def _start(self):
        # A packet's first byte, its length read ahead.
        wait = self.stream.wait
        while True:
            self.stream.wait = wait
            self._bound(self.idle_ms)
            first = self._in(1)
            if not first:
                return first
            self.stream.wait = True  # the rest follows at once (umqtt blocks for it too)
            self._bound(self.timeout_ms)
            ahead = b""
            length = 0
            while not ahead or ahead[-1] > 0x7F:
                if len(ahead) == 4:
                    raise ProtocolError("MQTT length over 4 bytes")
                byte = self._in(1, True)
                length |= (byte[0] & 0x7F) << (7 * len(ahead))
                ahead += byte
            if length <= self.max_packet:
                self.ahead, self.left = ahead, length
                return first
            if first[0] >> 4 != 3:
                raise ProtocolError("MQTT packet of %d bytes over the limit of %d" % (length, self.max_packet))
            # A PUBLISH: read and dropped. QoS 1 acknowledged, or the broker sends it again.
            skip = length
            if first[0] & 6:
                topic = self._in(2, True)
                topic = topic[0] << 8 | topic[1]
                self._skip(topic)
                packet_id = self._in(2, True)
                skip -= topic + 4
            self._skip(skip)
            if first[0] & 6 == 2:
                self.write(b"\x40\x02" + packet_id)
            if self.dropped:
                self.dropped("MQTT message of %d bytes dropped (over max_packet %d)" % (length, self.max_packet))

    def _skip(self, n):
        while n > 0:
            n -= len(self._in(min(n, 512), True))

    def _in(self, n, exact=False):
        try:
            data = self.io.read(n)
        except OSError:
            self.lost = True
            raise
        if data is not None and len(data) < n:
            self.lost = True
            if exact:
                raise OSError(-1)  # as umqtt reports the end of the stream
        return data

    def write(self, buf, n=None):
        self._bound(self.timeout_ms)
        view = memoryview(buf)[:n]  # n None: all of it
        try:
            return self.tls.write(view) if self.tls else self.stream.send_all(view)
        except OSError:
            self.lost = True
            raise

    def close(self):
        if self.tls:
            try:
                self.tls.close()
            except OSError:
                pass
        self.stream.close()


def open_client(client_id, host, port, user, password, ctx, keepalive=60, timeout_ms=10000, callback=None,
                max_packet=MAX_PACKET, dropped=None):
    # A connected umqtt.simple client, everything read and written on it by the deadline
    # timeout_ms from now (a registration attempt's: its connection ends with it); connect() lifts
    # that for its session. Needs umqtt.simple 1.5 or later (an `ssl` object and
    # `connect(timeout=)`): v1.28.0 freezes 1.7.0, mip installs 1.8.0. dropped(note), when
    # given, hears of each message over max_packet, which is skipped (it may raise).
    from umqtt.simple import MQTTClient, MQTTException

    link = _Link(ctx, net.deadline_in(timeout_ms), timeout_ms, keepalive, max_packet, dropped)
    c = MQTTClient(client_id, host, port, user, password, keepalive, ssl=link)
    if callback:
        c.set_callback(callback)
    try:
        # The TCP connect by umqtt's socket timeout; the TLS handshake and the CONNACK by the
        # deadline the _Link started before it.
        c.connect(timeout=timeout_ms / 1000)
    except Exception as e:
        close(c)  # no socket left open, whatever failed
        if isinstance(e, TypeError):
            if c.sock is None:
                # The call itself was refused: an umqtt.simple older than 1.5, which can neither
                # verify the broker's certificate on this firmware nor bound its waits.
                raise ConfigError("umqtt.simple is too old: mip install umqtt.simple")
            raise ProtocolError("garbled CONNACK")
        if isinstance(e, MQTTException):
            code = e.args[0] if e.args else None
            if code == 3:  # "server unavailable" (MQTT 3.1.1 3.2.2.3): Alibaba's throttling of MQTT registration
                raise busy("MQTT broker unavailable (CONNACK 3)", None, True)
            raise RejectedError(code, "MQTT CONNECT refused (CONNACK %s)" % code, "mqtt")
        # From net: the TLS handshake, refused or timed out, or no memory for it (stay_online
        # retries that) go up as they are.
        if isinstance(e, OSError):
            raise NetworkError("MQTT connection failed (%s)" % net.reason(e))
        if isinstance(e, (IndexError, AssertionError)):  # umqtt indexes an empty read when the broker closes
            raise NetworkError("MQTT broker sent no CONNACK")
        raise
    return c


def set_deadline(c, deadline):
    # Bounds everything read and written on the connection by `deadline` (ticks_ms; None:
    # the per-packet bounds again). Returns the one it replaces.
    link = c.sock
    if not isinstance(link, _Link):
        return None
    previous, link.until = link.until, deadline
    return previous


def wait_for(c, done, timeout_ms, send=None):
    # Takes in messages until done() or the timeout; returns done(). Every read, inside a
    # packet too, ends by the deadline: a stall is a NetworkError, not a hang. send(), when
    # given, runs first under the same deadline (request's SUBSCRIBE and PUBLISH: umqtt's
    # subscribe waits for its SUBACK with a blocking read).
    deadline = net.deadline_in(timeout_ms)
    previous = set_deadline(c, deadline)
    if previous is not None and clock.ticks_diff(previous, deadline) < 0:
        set_deadline(c, previous)
        deadline = previous
    try:
        if send:
            send()
        while not done():
            if net.left(deadline) <= 0:
                return False
            c.check_msg()
            clock.sleep_ms(10)
        return True
    except OSError as e:
        raise NetworkError("MQTT connection lost (%s)" % net.reason(e))
    except (IndexError, TypeError, AssertionError):  # umqtt's reading of a closed or garbled packet
        raise NetworkError("MQTT connection lost")
    finally:
        set_deadline(c, previous)


def request(c, topic, payload, reply, timeout_ms, subscribe=None):
    # Publishes payload on topic, subscribing first to `subscribe` when given (a topic, or a
    # tuple of them), and takes in messages until reply(topic, message) gives something other
    # than None, which it returns. The SUBACK, the publish and the reply all by one deadline.
    from umqtt.simple import MQTTException

    replies = []

    def on_message(t, message):
        value = reply(t, message)
        if value is not None:
            replies.append(value)

    def send():
        try:
            for t in subscribe if type(subscribe) is tuple else (subscribe,) if subscribe else ():
                c.subscribe(t)
        except MQTTException:  # a SUBACK of 0x80 (umqtt.simple 1.8)
            raise RejectedError(128, "SUBSCRIBE refused", "mqtt")
        c.publish(topic, payload)

    previous_callback = getattr(c, "cb", None)
    c.set_callback(on_message)
    try:
        if not wait_for(c, lambda: replies, timeout_ms, send):
            raise NetworkError("no reply within %d ms" % timeout_ms)
    finally:
        c.set_callback(previous_callback)
    return replies[0]


def close(c):
    try:
        c.sock.close()
    except Exception:
        pass


def connect(info, cloud, **given):
    # MQTT with the stored credential; `cloud` is its cloud's module (dynreg.tencent, .aliyun,
    # .azure or .aws), which names its broker and makes the login.
    opts = options(given, DEFAULTS)
    if info.needs_registration:
        raise ConfigError("no credential: run dynreg.ensure first")
    host, port, use_tls = endpoint(info, cloud.broker(info), opts["mqtt_url"])
    client_id, user, password = cloud.login(info, use_tls)
    ctx = None
    if use_tls:
        cert = key = None
        if info.auth == "cert":
            cert = info.read_credential_file("cert_file")
            key = info.read_credential_file("key_file")
        # A `tls_cache` dict (stay_online's) keeps the context from one connect to the next: the
        # CA is parsed once, not at every reconnect, where a board's heap is at its most
        # fragmented. A new client certificate (registered again) makes a new one.
        cache = opts["tls_cache"]
        if cache and cache["cert"] == cert:
            ctx = cache["ctx"]
        else:
            ctx = net.tls_context(load_ca(info, opts["ca"], "mqtt_ca") or cloud.roots(info, port), cert, key)
            if cache is not None:
                cache["ctx"], cache["cert"] = ctx, cert
    say(opts, "connecting to %s:%d as %s (%s)" % (host, port, client_id, "TLS" if use_tls else "plain TCP"))
    c = open_client(client_id, host, port, user, password, ctx, opts["keepalive"], opts["timeout_ms"],
                    max_packet=opts["max_packet"], dropped=lambda note: say(opts, note))
    set_deadline(c, None)  # the session's reads and writes: each by its own bound from now on
    say(opts, "MQTT connected")
    spend_product_secret(info, opts)
    return c


def spend_product_secret(info, opts):
    # The cloud has accepted this device's own login: from now on both clouds refuse to
    # register it again, and its ProductSecret would only let whoever reads this flash register
    # new devices of the product (AWS's claim: its certificate and key files, which would let
    # anyone provision things). The info records the login and loses the secret (unless
    # keep_product_secret) in one write. A failed write costs nothing: the info stays as it
    # was, and the next login tries again. Then the flash the old copies took is scrubbed,
    # once (again at the next login if a cut stopped it); a failed scrub is only logged.
    from dynreg import StorageError, store

    name = "group key" if info.cloud == "azure" else "claim" if info.cloud == "aws" else "ProductSecret"
    try:
        if info.erase_product_secret():
            say(opts, "%s erased from %s" % (name, info.path))
        elif not info.unscrubbed:
            return
    except StorageError as e:
        return say(opts, "%s not erased (%s)" % (name, e))
    info.unscrubbed = False
    try:
        done = store.scrub_free_space(info.folder)
        say(opts, "free flash " + ("not scrubbed: over 16 MiB" if done is None else "scrubbed (%d KiB)" % (done >> 10)))
    except OSError as e:
        say(opts, "free flash not scrubbed (errno %s)" % e.args[0])
