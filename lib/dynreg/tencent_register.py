# One Tencent registration attempt over HTTP(S): a fresh timestamp and nonce, the request of
# the API the info selects, and the parsed credential.
from dynreg import tencent, http, clock
from dynreg.flow import check_status, random_int, say


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
    status, answer, retry_after = http.post(url, headers, body, ca, opts["timeout_ms"])
    check_status(status, retry_after)
    return tencent.parse_response(answer, info.product_secret)
