# CPython stand-in for MicroPython's `micropython` module: only what lib/ uses.


def const(value):
    if not isinstance(value, int):
        raise TypeError("const() takes an int")
    return value
