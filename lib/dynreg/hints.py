# What a refusal means on a production line and what to do, added to RejectedError's text
# (docs/ERRORS.md has the whole guide). Imported only when a cloud or broker says no. Plain
# comparisons rather than tables: the strings stay in flash, the import builds no dicts.

_SECRET = "wrong ProductSecret for this product"
_ACTIVATED = ("the device has logged in before and keeps its stored credential; to register it"
              " again, reset it in the console first")
_PRECREATE = "the product is in pre-create mode: create this DeviceName in the console"
_DYNREG_OFF = "turn dynamic registration on for the product"


def _tencent(code, message):
    if code in ("AuthFailure.SignatureFailure", "1010") or message == "Check signature failed":
        return _SECRET
    if code == "AuthFailure.SignatureExpire":
        return "the device's clock is minutes off: set it (SNTP) before registering"
    if code == "FailedOperation.DeviceAlreadyActivated":
        return _ACTIVATED
    if code == "ResourceNotFound.DeviceNotExist" or message == "Pre create mode: device not exists":
        return _PRECREATE
    if (code == "UnauthorizedOperation.DynamicRegisterDisabled"
            or message == "Not support dynamic device register, please check setting first"):
        return _DYNREG_OFF
    if code == "ResourceNotFound.ProductNotExist":
        return "no such ProductId in this region"
    if code == "LimitExceeded.DeviceExceedLimit":
        return "the product's auto-create quota is used up: raise it in the console"
    return None


def _aliyun(code):
    if code == "401":
        return _SECRET
    if code == "6289":
        return _ACTIVATED
    if code == "6100":
        return "this DeviceName is not pre-registered: add it in the console first"
    if code == "6250":
        return "no such ProductKey in this region or instance"
    if code == "6280":
        return "the DeviceName breaks the console's naming rule"
    return None


def _azure(code):
    # DPS: an HTTP status, or an errorCode that begins with one (401002); or the registration's
    # status.
    if code == "disabled":
        return "the enrollment group or this registration is disabled in DPS: enable it"
    if code[:3] == "401":
        return "wrong group key for this enrollment group, or the clock is off (SAS token expiry)"
    if code[:3] == "404":
        return "no such ID scope, or no enrollment group admits this registration id"
    return None


def _connack(code):
    if code == "2":
        return "the broker refused the client id (or, on Alibaba, a keepalive outside 30-1200 s)"
    if code == "4":
        return "bad user name or password: the stored credential is wrong or was replaced by a newer registration"
    if code == "5":
        return "not authorized: the device is unknown, disabled, or its credential was replaced"
    return None


def hint(kind, code, message=None):
    # kind: "tencent", "aliyun", "azure" or "mqtt" (a CONNACK code); the codes of the clouds' answers.
    code = str(code)
    if kind == "tencent":
        return _tencent(code, message)
    if kind == "azure":
        return _azure(code)
    return _aliyun(code) if kind == "aliyun" else _connack(code)
