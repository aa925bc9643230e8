package main

// store_data.go reads everything stored about one person, for "Download
// my data" (account_data.go): every row of every table that names the
// account, less what is secret.

import (
	"context"
	"fmt"
	"time"
)

// personalTables are the tables that hold rows about an account, and the
// column that names it. A new table with a user_id column must be listed
// here: TestDownloadMyData fails until it is.
var personalTables = []struct{ table, key string }{
	{"users", "id"},
	{"tokens", "user_id"},
	{"outbox", "user_id"},
	{"email_changes", "user_id"},
	{"email_undos", "user_id"},
	{"activity", "user_id"},
	{"two_step", "user_id"},
	{"recovery_codes", "user_id"},
	{"passkeys", "user_id"},
	{"ceremonies", "user_id"},
	{"oidc_requests", "user_id"},
	{"oidc_tokens", "user_id"},
	{"oidc_consents", "user_id"},
}

// secretColumns are never exported: a password's hash, a token's hash, a
// composed message (it may carry a link's token), the instance holding a
// claim.
var secretColumns = map[string]bool{"password_hash": true, "hash": true, "message": true, "claimed_by": true, "secret": true, "data": true,
	"code_hash": true, "refresh_hash": true}

// personalData returns, by table, every row about account id, each a map
// of its columns but the secret ones; times (the columns that hold
// milliseconds) are written as RFC 3339 UTC.
func (st *store) personalData(ctx context.Context, id int64) (map[string][]map[string]any, error) {
	data := map[string][]map[string]any{}
	for _, t := range personalTables {
		rows, err := st.read.QueryContext(ctx, fmt.Sprintf(`SELECT * FROM %s WHERE %s = $1`, t.table, t.key), id)
		if err != nil {
			return nil, err
		}
		cols, err := rows.Columns()
		if err != nil {
			rows.Close()
			return nil, err
		}
		list := []map[string]any{}
		for rows.Next() {
			values := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, err
			}
			row := map[string]any{}
			for i, c := range cols {
				if secretColumns[c] {
					continue
				}
				row[c] = exportValue(c, values[i])
			}
			list = append(list, row)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
		data[t.table] = list
	}
	return data, nil
}

// timeColumns hold milliseconds since the epoch.
var timeColumns = map[string]bool{"created_at": true, "expiry": true, "last_used_at": true, "next_attempt_at": true, "claimed_until": true, "sent_at": true,
	"disabled_at": true, "invited_at": true, "at": true, "enabled_at": true, "auth_time": true, "refresh_expiry": true}

// exportValue is a column's value as the export writes it: text as text,
// a time as RFC 3339 UTC.
func exportValue(column string, v any) any {
	switch v := v.(type) {
	case []byte:
		return string(v)
	case int64:
		if timeColumns[column] && v > 0 {
			return time.UnixMilli(v).UTC().Format(time.RFC3339)
		}
		return v
	}
	return v
}
