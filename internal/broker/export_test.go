package broker

// ParkedCount reports how many connections wait without a goroutine.
func ParkedCount() int { return parkedCount() }
