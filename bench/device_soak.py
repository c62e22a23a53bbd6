# The soak's device (bench/soak.py): dynreg.online.stay_online with a stored credential, on the
# unix port at a board's heap or on the emulated Pico W, until it has had spec["online"]
# ["sessions"] sessions. At every (re)connect, once subscribed, it prints the heap with the new
# session up: "SOAK <session> <free bytes> <largest free block> <messages taken in so far>".
# Unix port: micropython -m device_soak SPEC.json; the chip: device_soak.main(spec).
import gc

from dynreg import online, store


def largest_free():
    # The largest block the heap can still give: bisection, every probe dropped and collected.
    gc.collect()
    low, high = 0, gc.mem_free()
    while high - low > 16:
        middle = (low + high) // 2
        try:
            bytearray(middle)  # dropped at once
            low = middle
        except MemoryError:
            high = middle
        gc.collect()
    return low


def main(spec):
    info = store.load(spec["info"])
    topic = spec["topic"].encode()
    counts = [0, 0]  # sessions, messages

    def on_connect(client):
        counts[0] += 1
        client.subscribe(topic)
        gc.collect()
        print("SOAK %d %d %d %d" % (counts[0], gc.mem_free(), largest_free(), counts[1]))

    def on_message(client, msg_topic, msg):
        counts[1] += 1

    online.stay_online(info, on_connect, on_message, **spec["online"])
    print("SOAK end %d" % counts[1])


if __name__ == "__main__":
    import json
    import sys

    with open(sys.argv[1]) as f:
        main(json.load(f))
