package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRoutesAnswerJSON(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)

	res, body := do(t, "GET", app.url+"/v1/healthcheck", "")
	info, _ := body["system_info"].(map[string]any)
	if res.StatusCode != 200 || body["status"] != "available" || info["environment"] != "development" || info["version"] == "" {
		t.Errorf("healthcheck: %d %v", res.StatusCode, body)
	}
	res, body = do(t, "GET", app.url+"/v1/nothing", "")
	if res.StatusCode != 404 || body["error"] == nil {
		t.Errorf("unknown path: %d %v", res.StatusCode, body)
	}
	res, body = do(t, "DELETE", app.url+"/v1/users", "")
	if res.StatusCode != 405 || res.Header.Get("Allow") != "POST" || body["error"] == nil {
		t.Errorf("wrong method: %d Allow=%q %v", res.StatusCode, res.Header.Get("Allow"), body)
	}
}

func TestPanicInHandlerAnswers500(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), nil)
	h := app.recoverPanic(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("oops") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), "the server encountered a problem") {
		t.Errorf("got %d %q", rec.Code, rec.Body)
	}
	if !containsLine(app.logs.String(), "internal error", "oops") {
		t.Error("the panic was not logged")
	}
}

func TestCORSForTrustedOrigins(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, startSMTP(t, nil), func(cfg *config) { cfg.corsOrigins = []string{"https://app.example.com"} })
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", app.url+"/v1/users", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := preflight("https://app.example.com")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("preflight from a trusted origin: %d %v", res.StatusCode, res.Header)
	}
	if res := preflight("https://evil.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin got CORS headers: %v", res.Header)
	}
}
