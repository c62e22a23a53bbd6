# What a refusal means on a production line, added to RejectedError's text (docs/ERRORS.md
# has the whole guide), and whether waiting can change it. Imported only when a cloud or broker
# says no. Plain comparisons rather than tables: the strings stay in flash, the import builds no
# dicts.

_SECRET = "wrong ProductSecret"
_ACTIVATED = "registered before: reset it in the console"
_PRECREATE = "pre-create: create this DeviceName in the console"


_FINAL = (_SECRET, _ACTIVATED, "no such ProductId in this region", "no such ProductKey in this region or instance",
          "DeviceName breaks the naming rule", "no such ID scope or enrollment group",
          "client id refused (Alibaba: keepalive outside 30-1200 s)")


def explain(kind, code, message=None):
    # -> (hint or None, fixed_in_console): the second is False for a refusal that no change in
    # the console and no wait can turn (a wrong secret, a device activated before, a bad info);
    # True for the others, an unknown code included (dynamic registration off, a DeviceName not
    # pre-created, a quota, a disabled device): the board asks again now and then.
    found = hint(kind, code, message)
    return found, found not in _FINAL


def hint(kind, code, message=None):
    # kind: "tencent", "aliyun", "azure" or "mqtt" (a CONNACK code); the codes of the clouds' answers.
    code = str(code)
    if kind == "tencent":
        # Two refusals are known by their messages (PROTOCOLS.md 2.2), their codes unconfirmed.
        message = str(message)
        if code in ("AuthFailure.SignatureFailure", "1010"):
            return _SECRET
        if code == "AuthFailure.SignatureExpire":
            return "clock off: set it by SNTP"
        if code == "FailedOperation.DeviceAlreadyActivated":
            return _ACTIVATED
        if code == "ResourceNotFound.DeviceNotExist" or message.startswith("Pre create mode"):
            return _PRECREATE
        if code == "UnauthorizedOperation.DynamicRegisterDisabled" or message.startswith("Not support dynamic"):
            return "dynamic registration off"
        if code == "ResourceNotFound.ProductNotExist":
            return "no such ProductId in this region"
        if code == "LimitExceeded.DeviceExceedLimit":
            return "auto-create quota used up"
    elif kind == "aliyun":
        if code == "401":
            return _SECRET
        if code == "6289":
            return _ACTIVATED
        if code == "6100":
            return _PRECREATE
        if code == "6250":
            return "no such ProductKey in this region or instance"
        if code == "6280":
            return "DeviceName breaks the naming rule"
    elif kind == "azure":
        # DPS: an HTTP status, or an errorCode that begins with one (401002); or the
        # registration's status.
        if code == "disabled":
            return "enrollment disabled in DPS"
        if code[:3] == "401":
            return "wrong group key, or the clock is off"
        if code[:3] == "404":
            return "no such ID scope or enrollment group"
    elif code == "2":  # CONNACK codes
        return "client id refused (Alibaba: keepalive outside 30-1200 s)"
    elif code in ("4", "5"):
        return "device deleted, disabled or registered again"
    return None
