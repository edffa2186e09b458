package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/necos/necos/api"
	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/broker"
	"github.com/necos/necos/core/sro"
)

// A change refused for the tenant's budget is the client's to fix: 422, saying the price
// and the budget; a provider without room is not answered so.
func TestOverBudgetIsUnprocessable(t *testing.T) {
	answer := func(err error) (int, string) {
		rec := httptest.NewRecorder()
		api.WriteError(rec, httptest.NewRequest("POST", "/v1/slices/s1", nil), err)
		var body v1.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		return rec.Code, body.Error
	}
	over := &broker.BudgetError{Price: 12.5, Unit: "per machine per day",
		Budget: broker.Budget{Model: broker.PerMachinePerDay, Op: "<=", Euros: 10}}
	code, msg := answer(fmt.Errorf("resize part s1/core (every node of VDU vm to 5 vCPUs) at BR: %w", over))
	if want := "at BR: over budget by €2.50 (€12.50 per machine per day, budget <=10.00)"; code != http.StatusUnprocessableEntity || !strings.Contains(msg, want) {
		t.Errorf("over budget: %d %q, want 422 saying %q", code, msg, want)
	}
	if code, _ := answer(fmt.Errorf("scale part s1/core at BR: %w", sro.ErrProviderFull)); code == http.StatusUnprocessableEntity {
		t.Errorf("provider full answered %d, as a budget refusal", code)
	}
}
