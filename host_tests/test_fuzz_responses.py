# Hostile responses, seeded and repeatable, the same bytes on CPython and MicroPython: valid
# answers of both clouds (HTTP bodies, MQTT payloads, gateway replies) mutated and generated,
# through every parse and decrypt path, and the HTTP bodies through dynreg.ensure itself with
# only the transport faked. Every input must end in a credential or a dynreg.Error, never
# another exception, and nothing may be stored from a bad answer.
import json
import sys

from support import scratch_dir, write, read
import dynreg
from dynreg import aliyun, tencent, http, store, flow

SEED = 20261121
# Mutations of each valid answer; 7 shapes: over 10 000 inputs on CPython and the unix port.
# The emulated Pico W runs the same sequence's first part: its CPU takes 4 minutes for it all.
ON_BOARD = sys.platform == "rp2"
PER_SHAPE = 200 if ON_BOARD else 1700
GENERATED = 300 if ON_BOARD else 1500
THROUGH_ENSURE = 100 if ON_BOARD else 600
SECRET = "hzvf5LF9S0isvBhDSauWMaIk"
PSK = "lDZ6Uqt+I9E0wW7rvDUs7Q=="  # what PSK_PAYLOAD decrypts to
PSK_PAYLOAD = "s6FB3a1BA/YYbcmSE12XpeDVmQNDcf1QgVD141RRbmmAnFwQfp1ECAu5O016mCOvYlJJ6V59yM4OqQSiWphfTg=="
REQUESTED = [("a1SubProd01", "sensor-0001"), ("a1SubProd01", "sensor-0002")]
SHAPES = [
    ("tencent current", b'{"Response":{"Len":53,"Payload":"' + PSK_PAYLOAD.encode() + b'","RequestId":"r1"}}'),
    ("tencent legacy", b'{"code":0,"message":"","len":53,"payload":"' + PSK_PAYLOAD.encode() + b'"}'),
    ("tencent error", b'{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"no"},"RequestId":"r"}}'),
    ("aliyun https", b'{"code":200,"data":{"productKey":"a1IoK3f7xyz","deviceName":"OvenDevice01",'
                     b'"deviceSecret":"8d1f0cdab49dd229cf3b75aaaaaaaaaa"},"message":"success"}'),
    ("aliyun /ext/regnwl", b'{"clientId":"c1","productKey":"a1IoK3f7xyz","deviceName":"OvenDevice01","deviceToken":"t1"}'),
    ("aliyun sub.register_reply", b'{"id":"7","code":200,"message":"success","data":[{"iotId":"i1",'
                                  b'"productKey":"a1SubProd01","deviceName":"sensor-0001","deviceSecret":"s1"}]}'),
    ("aliyun topo.add_reply", b'{"id":"7","code":200,"message":"success","data":[]}'),
]
JUNK = [b"\xff", b"\xc3\x28", b"\x00", b"{", b"}", b"[", b"]", b'"', b",", b":", b"null", b"true", b"-1",
        b"1e999", b"\\u0000", b"\\ud800", b'""', b"9" * 40, b"[" * 200, b"{}", b"[]", b" ", b"=", b"==="]


class Random:
    # xorshift32: the same sequence on every runtime, unlike each runtime's `random`.
    def __init__(self, seed):
        self.state = seed or 1

    def next(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n):
        return self.next() % n


# A board's heap is fragmented by the time this runs: there the padded bodies stay near 4 KiB
# (one new block each, from a pad made once); the 8 KiB limit itself is crossed on CPython and
# the unix port, and on the board by test_store's and test_net's size tests.
PADDED = 4000 if ON_BOARD else 8000
PAD = b" " * (PADDED + 400)


def mutate(rng, data):
    # Immutable bytes throughout: MicroPython's bytearray has no slice deletion.
    data = bytes(data)
    for _ in range(1 + rng.below(4)):
        op = rng.below(9)
        at = rng.below(len(data) + 1)
        if op == 0 and data:  # replace a byte
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([rng.below(256)]) + data[at + 1:]
        elif op == 1:  # cut the body short
            data = data[:at]
        elif op == 2:  # insert junk
            data = data[:at] + JUNK[rng.below(len(JUNK))] + data[at:]
        elif op == 3:  # delete a run
            data = data[:at] + data[at + 1 + rng.below(8):]
        elif op == 4:  # a value of the wrong type
            data = data.replace(b"53", [b'"53"', b"-53", b"530", b"5.3", b"true"][rng.below(5)], 1)
            data = data.replace(b"200", [b'"200"', b"201", b"null", b"0"][rng.below(4)], 1)
        elif op == 5:  # deep nesting
            depth = 1 + rng.below(400)
            data = b"[" * depth + data + b"]" * depth
        elif op == 6:  # oversize: padded to about the 8 KiB limit (a body never grows past it)
            data = data + memoryview(PAD)[:max(1, PADDED + rng.below(400) - len(data))]
        elif op == 7:  # non-UTF-8 inside a string
            data = data.replace(b'"', b'"\xfe\xff', 1 + rng.below(2))
        else:  # duplicate a slice
            data = data[:at] + data[at:at + rng.below(20)] + data[at:]
    return data


def parsers(shape):
    if shape.startswith("tencent"):
        return [lambda body: tencent.parse_response(body, SECRET)]
    if shape == "aliyun https":
        return [aliyun.parse_register_response]
    if shape == "aliyun /ext/regnwl":
        return [lambda p: aliyun.parse_register_message(p, "regnwl"), aliyun.parse_register_message]
    if shape == "aliyun sub.register_reply":
        return [lambda p: aliyun.parse_sub_register_reply(p, 7, REQUESTED)]
    return [lambda p: aliyun.parse_topo_add_reply(p, 7)]


def test_mutated_answers_end_in_credential_or_dynreg_error():
    rng = Random(SEED)
    counts = {"inputs": 0, "accepted": 0, "refused": 0}
    unexpected = []
    for shape, valid in SHAPES:
        for parse in parsers(shape):
            for i in range(PER_SHAPE):
                body = mutate(rng, valid) if i else valid
                counts["inputs"] += 1
                try:
                    parse(body)
                    counts["accepted"] += 1
                except dynreg.Error as e:
                    counts["refused"] += 1
                    if SECRET in str(e) or PSK in str(e):
                        unexpected.append("%s #%d: a secret in the message: %s" % (shape, i, e))
                except Exception as e:
                    unexpected.append("%s #%d: %s: %s" % (shape, i, type(e).__name__, e))
    # The accepted count differs by runtime: MicroPython's json also takes documents with a
    # missing comma or colon. Those answers still carry the right payload; see docs/API.md "Limits".
    print("fuzz: %(inputs)d mutated answers, %(accepted)d accepted, %(refused)d refused as dynreg.Error" % counts)
    assert not unexpected, unexpected[:5]
    assert counts["inputs"] >= 8 * PER_SHAPE and counts["refused"] > counts["inputs"] // 2


def test_generated_payloads_are_protocol_errors():
    # Payloads that are valid base64 of random blocks, with every Len: garbage after AES, which
    # must never come out as a JSON object.
    from binascii import b2a_base64

    rng = Random(SEED + 1)
    unexpected = []
    for i in range(GENERATED):
        blocks = bytes(rng.below(256) for _ in range(16 * (1 + rng.below(6))))
        payload = b2a_base64(blocks)[:-1].decode()
        length = rng.below(len(blocks) + 20) - 5
        try:
            got = tencent.decrypt_payload(payload, SECRET, length if i % 3 else None)
            unexpected.append("#%d: decrypted to a %s" % (i, type(got).__name__))
        except dynreg.ProtocolError:
            pass
        except Exception as e:
            unexpected.append("#%d: %s: %s" % (i, type(e).__name__, e))
    assert not unexpected, unexpected[:5]


def test_nothing_is_stored_from_a_bad_answer():
    # dynreg.ensure end to end with the transport faked: only a valid answer reaches the flash.
    rng = Random(SEED + 2)
    folder = scratch_dir()
    path = folder + "/device_info.json"
    original = json.dumps({"dynreg": 1, "cloud": "tencent", "product_id": "ASJ3GXJXGX", "product_secret": SECRET,
                           "device_name": "xyz", "register_url": "http://localhost:1", "plain_http": True,
                           "credential": {"psk": ""}})
    answer = [b""]  # the one the fake transport returns next
    real_post = http.post
    http.post = lambda url, headers, body, ca=None, timeout_ms=0: (200, answer[0], None)
    stored = refused = 0
    unexpected = []
    try:
        for i in range(THROUGH_ENSURE):
            write(path, original)
            answer[0] = mutate(rng, SHAPES[i % 2][1]) if i else SHAPES[0][1]
            try:
                info = dynreg.ensure(path, attempts=1, log=None)
                assert info.credential["psk"] == "lDZ6Uqt+I9E0wW7rvDUs7Q==", "a wrong psk was stored"
                assert store.load(path).credential == info.credential
                stored += 1
            except dynreg.Error as e:
                refused += 1
                assert read(path) == original, "the info changed after a refused answer"
                assert SECRET not in str(e) and PSK not in str(e), "a secret in an error message"
            except Exception as e:
                unexpected.append("#%d: %s: %s" % (i, type(e).__name__, e))
    finally:
        http.post = real_post
    print("fuzz through ensure: %d answers, %d stored, %d refused with the info untouched" % (
        stored + refused, stored, refused))
    assert not unexpected, unexpected[:5]
    assert stored >= 1 and refused > THROUGH_ENSURE // 2
