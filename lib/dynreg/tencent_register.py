# One Tencent registration attempt over HTTP(S): a fresh timestamp and nonce, the request of
# the API the info selects, and the parsed credential.
from dynreg import NetworkError, tencent, http, clock
from dynreg.flow import random_int, say


def register(info, ca, opts, attempt):
    timestamp, nonce = clock.unix_time(), random_int()
    if info.api == "legacy":
        url, headers, body = tencent.legacy_request(info.product, info.device_name, info.product_secret,
                                                    timestamp, nonce, endpoint=info.register_url)
    else:
        url, headers, body = tencent.register_request(info.product, info.device_name, info.product_secret,
                                                      timestamp, nonce, algorithm=info.algorithm,
                                                      endpoint=info.register_url)
    say(opts, "registering %s/%s with Tencent (%s API, attempt %d of %d)"
        % (info.product, info.device_name, info.api, attempt, opts["attempts"]))
    status, answer = http.post(url, headers, body, ca, opts["timeout_ms"])
    if status >= 500 or status == 429:
        raise NetworkError("server answered HTTP %d" % status)
    return tencent.parse_response(answer, info.product_secret)
