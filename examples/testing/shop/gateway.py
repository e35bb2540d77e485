"""The payment gateway client: flaky on purpose (tests set ``FAILURES``)."""

FAILURES = {"left": 0}


def send(account, amount):
    if FAILURES["left"]:
        FAILURES["left"] -= 1
        raise ConnectionError("gateway unreachable")
    return {"account": account, "amount": amount, "status": "accepted"}
