package authz

import (
	"errors"
	"strings"
	"testing"
)

func TestPasswordHash(t *testing.T) {
	h := HashPassword("correct horse battery staple")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not an argon2id PHC string with the default parameters", h)
	}
	if strings.Contains(h, "correct") {
		t.Fatal("the hash holds the password")
	}
	if err := CheckPassword("correct horse battery staple", h); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := CheckPassword("correct horse battery stapler", h); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("wrong password: got %v, want ErrBadPassword", err)
	}
	if h2 := HashPassword("correct horse battery staple"); h2 == h {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if NeedsRehash(h) {
		t.Fatal("a fresh hash needs rehashing")
	}
	// Other parameters still verify, and are due for a rehash.
	old := hashWith("pw", PasswordParams{Memory: 64, Time: 1, Threads: 1})
	if err := CheckPassword("pw", old); err != nil {
		t.Fatalf("hash with other parameters: %v", err)
	}
	if !NeedsRehash(old) {
		t.Fatal("a hash with other parameters does not need rehashing")
	}
}

func TestPasswordHashRefusesGarbage(t *testing.T) {
	for _, h := range []string{"", "plain", "$2a$10$abcdefghijklmnopqrstuv", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // asks for 95 GiB
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$"} {
		if err := CheckPassword("pw", h); err == nil || errors.Is(err, ErrBadPassword) {
			t.Errorf("CheckPassword against %q: got %v, want a malformed-hash error", h, err)
		}
	}
}

func TestSessionToken(t *testing.T) {
	tok, id := NewSessionToken()
	if len(tok) < 40 || SessionID(tok) != id || strings.Contains(id, tok) {
		t.Fatalf("token %q id %q", tok, id)
	}
	tok2, _ := NewSessionToken()
	if tok == tok2 || NewCSRFToken() == NewCSRFToken() {
		t.Fatal("tokens repeat")
	}
}

func TestUserActor(t *testing.T) {
	if a := (&Principal{KeyID: "key_1"}).Actor(); a != "key:key_1" {
		t.Fatalf("key actor %q", a)
	}
	if a := (&Principal{UserID: "usr_1"}).Actor(); a != "user:usr_1" {
		t.Fatalf("user actor %q", a)
	}
}
