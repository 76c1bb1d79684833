package secrets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestSecretNeverPrintsItsValue(t *testing.T) {
	const v = "hunter2-very-secret"
	s := New(v)
	vals := Values{"API_KEY": s}
	type holder struct {
		Exported Secret
		hidden   Secret
		vals     Values
		Ptr      *Secret
	}
	h := holder{Exported: s, hidden: s, vals: vals, Ptr: &s}

	var forms []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		forms = append(forms, fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s), fmt.Sprintf(verb, vals), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h))
	}
	forms = append(forms, s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintln(s, vals), fmt.Errorf("wrapped %v", s).Error())
	for _, x := range []any{s, &s, vals, h, []Secret{s}} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		forms = append(forms, string(b))
	}
	txt, _ := s.MarshalText()
	forms = append(forms, string(txt))

	var buf bytes.Buffer
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	logger := zap.New(zapcore.NewCore(enc, zapcore.AddSync(&buf), zapcore.DebugLevel))
	logger.Debug("fields", zap.Any("any", s), zap.Any("anyptr", &s), zap.Stringer("stringer", s),
		zap.Reflect("reflect", s), s.Field("field"), zap.Any("map", vals), zap.Any("holder", h), zap.Reflect("holder_reflect", h))
	console := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	zap.New(zapcore.NewCore(console, zapcore.AddSync(&buf), zapcore.DebugLevel)).Debug("console", zap.Any("s", s), zap.Any("map", vals))
	forms = append(forms, buf.String())

	for _, f := range forms {
		if strings.Contains(f, v) || strings.Contains(f, fmt.Sprintf("%x", v)) || strings.Contains(f, fmt.Sprintf("%X", v)) {
			t.Fatalf("value leaked: %s", f)
		}
	}
	for _, f := range []string{fmt.Sprintf("%v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%q", s), s.String()} {
		if f != "[REDACTED]" {
			t.Fatalf("got %q, want [REDACTED]", f)
		}
	}
	if b, _ := json.Marshal(s); string(b) != `"[REDACTED]"` {
		t.Fatalf("JSON %s", b)
	}
	if !strings.Contains(buf.String(), `"any":"[REDACTED]"`) || !strings.Contains(buf.String(), `"field":"[REDACTED]"`) || !strings.Contains(buf.String(), `"map":{"API_KEY":"[REDACTED]"}`) {
		t.Fatalf("zap output: %s", buf.String())
	}
	if s.Value() != v || (Secret{}).Value() != "" {
		t.Fatal("Value must return the secret")
	}
}
