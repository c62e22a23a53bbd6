# dynreg.azure against Microsoft's published example and the vendor SDK's own values
# (vectors/azure_public.json), and the DPS answers as the service shapes them (runs on
# CPython and MicroPython).
from support import vectors, raises
from dynreg import azure, codec, ConfigError, ProtocolError, RejectedError

PUBLIC = vectors("azure_public")
KEY = PUBLIC["derive"][1]["device_key"]  # device-001's


def test_derived_device_keys():
    for v in PUBLIC["derive"]:
        assert azure.derive_device_key(v["group_key"], v["registration_id"]) == v["device_key"], v["source"]


def test_sas_tokens():
    for v in PUBLIC["sas"]:
        assert azure.sas_token(v["resource"], v["key"], v["expiry"], v["key_name"]) == v["token"], v["source"]


def test_dps_login_is_the_registration_id_the_documented_username_and_a_registration_token():
    client_id, username, password = azure.dps_login("0ne00000A0A", "device-001", KEY, 1700000000)
    assert client_id == "device-001"
    assert username == "0ne00000A0A/registrations/device-001/api-version=2019-03-31"
    assert password == PUBLIC["sas"][0]["token"]


def test_hub_login_is_the_device_id_the_documented_username_and_a_device_token():
    client_id, username, password = azure.hub_login("myhub.azure-devices.net", "device-001", KEY, 1700000000)
    assert client_id == "device-001"
    assert username == "myhub.azure-devices.net/device-001/?api-version=2021-04-12"
    assert password == PUBLIC["sas"][1]["token"]


def test_quote_keeps_only_the_unreserved_characters():
    # RFC 3986 2.3: letters, digits and - . _ ~; everything else as %XX of its UTF-8 bytes.
    assert codec.quote("aZ09-._~") == "aZ09-._~"
    assert codec.quote("a b/+=&?%") == "a%20b%2F%2B%3D%26%3F%25"
    assert codec.quote("\u00e9") == "%C3%A9"


def test_messages():
    topic, payload = azure.register_message("device-001", 7)
    assert topic == "$dps/registrations/PUT/iotdps-register/?$rid=7"
    assert payload == b'{"registrationId":"device-001"}'
    topic, payload = azure.status_message("4.abc+def/1", 8)
    assert topic == "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=8&operationId=4.abc%2Bdef%2F1"


def test_response_topics():
    assert azure.response_topic(b"$dps/registrations/res/202/?$rid=7&retry-after=3") == (202, "7", 3)
    assert azure.response_topic(b"$dps/registrations/res/200/?$rid=8") == (200, "8", None)
    assert azure.response_topic(b"$dps/registrations/res/429/?retry-after=999999&$rid=9") == (429, "9", None)
    assert azure.response_topic(b"devices/d/messages/devicebound/x") is None
    raises(ProtocolError, azure.response_topic, b"$dps/registrations/res/abc/?$rid=7")


def test_assigning_gives_the_operation_to_poll():
    body = b'{"operationId":"4.0ab.1","status":"assigning"}'
    assert azure.parse_answer(202, body) == ("assigning", "4.0ab.1")


def test_assigned_gives_the_hub_and_the_device_id():
    body = (b'{"operationId":"4.0ab.1","status":"assigned","registrationState":{"registrationId":"device-001",'
            b'"assignedHub":"myhub.azure-devices.net","deviceId":"device-001","status":"assigned",'
            b'"substatus":"initialAssignment"}}')
    assert azure.parse_answer(200, body) == ("assigned", {"hub": "myhub.azure-devices.net", "device_id": "device-001"})


def test_refusals_are_rejected_errors_with_the_service_code():
    e = raises(RejectedError, azure.parse_answer, 401,
               b'{"errorCode":401002,"trackingId":"t","message":"The request is unauthorized.","timestampUtc":"x"}')
    assert e.code == 401002 and "unauthorized" in e.message
    assert "wrong group key" in str(e)
    e = raises(RejectedError, azure.parse_answer, 404, b"")
    assert e.code == 404 and "ID scope" in str(e)
    body = (b'{"operationId":"o","status":"failed","registrationState":{"registrationId":"d","status":"failed",'
            b'"errorCode":400207,"errorMessage":"Custom allocation failed"}}')
    e = raises(RejectedError, azure.parse_answer, 200, body)
    assert e.code == 400207 and e.message == "Custom allocation failed"
    e = raises(RejectedError, azure.parse_answer, 200,
               b'{"operationId":"o","status":"disabled","registrationState":{"status":"disabled"}}')
    assert e.code == "disabled" and "disabled in DPS" in str(e)


def test_garbled_answers_are_protocol_errors():
    for status, body in ((202, b"not json"), (202, b'{"status":"assigning"}'), (200, b'{"operationId":"o","status":"assigned"}'),
                         (200, b'{"operationId":"o","status":"assigned","registrationState":{"assignedHub":"h"}}'),
                         (200, b'{"operationId":"o","status":"assigned","registrationState":'
                               b'{"assignedHub":"evil/hub","deviceId":"d"}}'),
                         (202, b"[" * 200), (202, b" " * 9000)):
        raises(ProtocolError, azure.parse_answer, status, body)


def test_bad_identities_are_config_errors_that_never_echo_the_value():
    for rid in ("", "a" * 129, "has space", "ends.", "slash/no"):
        e = raises(ConfigError, azure.dps_login, "0ne00000A0A", rid, KEY, 1700000000)
        assert not rid or rid not in str(e)
    raises(ConfigError, azure.dps_login, "0n", "device-001", KEY, 1700000000)
    secret = "c2hvcnQ="  # base64 of 5 bytes: too short to be a group key
    e = raises(ConfigError, azure.derive_device_key, secret, "device-001")
    assert secret not in str(e)
    e = raises(ConfigError, azure.derive_device_key, "not base64!", "device-001")
    assert "not base64" not in str(e)
