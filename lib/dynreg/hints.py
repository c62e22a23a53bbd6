# What a refusal means on a production line, added to RejectedError's text (docs/ERRORS.md
# has the whole guide), and whether waiting can change it. Imported only when a cloud or broker
# says no. Plain comparisons rather than tables: the strings stay in flash, the import builds no
# dicts.


def explain(kind, code, message=None):
    # -> (hint or None, fixed_in_console). kind: "tencent", "aliyun", "azure", "aws" or "mqtt" (a
    # CONNACK code); the codes of the clouds' answers. Azure's: an HTTP status, or an errorCode
    # that begins with one (401002); or the registration's status. AWS's: fleet provisioning's
    # statusCode (its errorCode leads the message), 403 and 404 as AWS's SDKs name them
    # (PROTOCOLS.md 6). Tencent's: two refusals are known by their messages (PROTOCOLS.md 2.2),
    # their codes unconfirmed.
    code = str(code)
    message = str(message)
    tencent = kind == "tencent"
    aliyun = kind == "aliyun"
    azure = kind == "azure"
    aws = kind == "aws"
    mqtt = kind == "mqtt"
    # First the refusals that no change in the console and no wait can turn (a wrong secret, a
    # device activated before, a bad info): fixed_in_console False.
    fixable = False
    if tencent and (code == "AuthFailure.SignatureFailure" or code == "1010") or aliyun and code == "401":
        found = "wrong ProductSecret"
    elif tencent and code == "FailedOperation.DeviceAlreadyActivated" or aliyun and code == "6289":
        found = "registered before: reset it in the console"
    elif tencent and code == "ResourceNotFound.ProductNotExist":
        found = "no such ProductId in this region"
    elif aliyun and code == "6250":
        found = "no such ProductKey in this region or instance"
    elif aliyun and code == "6280":
        found = "DeviceName breaks the naming rule"
    elif azure and code[:3] == "404":
        found = "no such ID scope or enrollment group"
    elif aws and code == "404":
        found = "no such provisioning template in this account and region"
    elif mqtt and code == "2":
        found = "client id refused (Alibaba: keepalive outside 30-1200 s)"
    else:
        # Then the others, an unknown code included (dynamic registration off, a DeviceName not
        # pre-created, a quota, a disabled device): the board asks again now and then.
        fixable = True
        found = None
        if tencent and code == "AuthFailure.SignatureExpire":
            found = "clock off: set it by SNTP"
        elif tencent and (code == "ResourceNotFound.DeviceNotExist" or message.startswith("Pre create mode")) \
                or aliyun and code == "6100":
            found = "pre-create: create this DeviceName in the console"
        elif tencent and (code == "UnauthorizedOperation.DynamicRegisterDisabled"
                          or message.startswith("Not support dynamic")):
            found = "dynamic registration off"
        elif tencent and code == "LimitExceeded.DeviceExceedLimit":
            found = "auto-create quota used up"
        elif azure and code == "disabled":
            found = "enrollment disabled in DPS"
        elif azure and code[:3] == "401":
            found = "wrong group key, or the clock is off"
        elif aws and code == "403":
            found = "the claim's policy or the template's pre-provisioning hook refused"
        elif mqtt and (code == "4" or code == "5"):
            found = "device deleted, disabled or registered again"
    return found, fixable
