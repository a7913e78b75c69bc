package ids

import "testing"

func TestNewIsOrderedAndValid(t *testing.T) {
	prev := ""
	for i := 0; i < 10000; i++ {
		id := New("dev")
		if !Valid("dev", id) {
			t.Fatalf("%q is not valid", id)
		}
		if id <= prev {
			t.Fatalf("ids not increasing: %q then %q", prev, id)
		}
		prev = id
	}
}

func TestValidRejects(t *testing.T) {
	for _, s := range []string{"", "dev_", "dev_short", "ten_01jd0000000000000000000000", "dev_01JD00000000000000000000000", "dev_01jd000000000000000000000u"} {
		if Valid("dev", s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
}

func TestToken(t *testing.T) {
	if got := len(Token(20)); got != 32 {
		t.Fatalf("Token(20) has %d characters, want 32", got)
	}
	if Token(16) == Token(16) {
		t.Fatal("tokens repeat")
	}
}
