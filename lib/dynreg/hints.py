# What a refusal means on a production line and what to do, added to RejectedError's text.
# Imported only when a cloud or broker says no. Codes: the clouds' own (README, error guide).
_TENCENT_SECRET = "wrong ProductSecret for this product"
_ALIYUN_SECRET = _TENCENT_SECRET
_ACTIVATED = ("the device has logged in before and keeps its stored credential; to register it"
              " again, reset it in the console first")
_HINTS = {
    "tencent": {
        "AuthFailure.SignatureFailure": _TENCENT_SECRET,
        "1010": _TENCENT_SECRET,
        "AuthFailure.SignatureExpire": "the device's clock is minutes off: set it (SNTP) before registering",
        "FailedOperation.DeviceAlreadyActivated": _ACTIVATED,
        "ResourceNotFound.DeviceNotExist": "the product is in pre-create mode: create this DeviceName in the console",
        "UnauthorizedOperation.DynamicRegisterDisabled": "turn dynamic registration on for the product",
        "ResourceNotFound.ProductNotExist": "no such ProductId in this region",
        "LimitExceeded.DeviceExceedLimit": "the product's auto-create quota is used up: raise it in the console",
    },
    "aliyun": {
        "401": _ALIYUN_SECRET,
        "6289": _ACTIVATED,
        "6100": "this DeviceName is not pre-registered: add it in the console first",
        "6250": "no such ProductKey in this region or instance",
        "6280": "the DeviceName breaks the console's naming rule",
    },
    "mqtt": {
        "2": "the broker refused the client id (or, on Alibaba, a keepalive outside 30-1200 s)",
        "4": "bad user name or password: the stored credential is wrong or was replaced by a newer registration",
        "5": "not authorized: the device is unknown, disabled, or its credential was replaced",
    },
}


# Tencent's published messages (PROTOCOLS.md 2.1, 2.2), whatever code they come with.
_TENCENT_MESSAGES = {
    "Check signature failed": _TENCENT_SECRET,
    "Pre create mode: device not exists": _HINTS["tencent"]["ResourceNotFound.DeviceNotExist"],
    "Not support dynamic device register, please check setting first":
        _HINTS["tencent"]["UnauthorizedOperation.DynamicRegisterDisabled"],
}


def hint(kind, code, message=None):
    found = _HINTS[kind].get(str(code))
    if found is None and kind == "tencent":
        found = _TENCENT_MESSAGES.get(message)
    return found
