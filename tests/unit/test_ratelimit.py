from cafe.domain.ratelimit import SlidingWindowLimiter


def test_sliding_window() -> None:
    limiter = SlidingWindowLimiter(limit=3, window=60)
    assert all(limiter.hit("a", t) for t in (0, 1, 2))
    assert not limiter.hit("a", 3) and not limiter.allowed("a", 59)
    assert limiter.retry_after("a", 30) == 30
    assert limiter.hit("b", 3)             # keys are independent
    assert limiter.hit("a", 60.5)          # the oldest hit left the window


def test_memory_is_bounded() -> None:
    limiter = SlidingWindowLimiter(limit=1, window=1, max_keys=100)
    for i in range(1000):
        limiter.hit(i, float(i))
    assert len(limiter._hits) <= 101
