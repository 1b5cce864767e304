package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Device runs the device authorization grant (RFC 8628): it shows the
// verification URL and code on in.Out and polls the token endpoint.
func (e *Engine) Device(ctx context.Context, ar *AuthRequest, in Interaction) (*Token, error) {
	as := ar.Discovery.AS
	if as.DeviceAuthorizationEndpoint == "" {
		return nil, fmt.Errorf("the authorization server %s offers no device authorization endpoint; use the browser flow (drop --device)", as.Issuer)
	}
	form := url.Values{}
	if len(ar.Scopes) > 0 {
		form.Set("scope", strings.Join(ar.Scopes, " "))
	}
	if !ar.NoResource {
		form.Set("resource", ar.Discovery.Resource)
	}
	var da struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int    `json:"expires_in"`
		Interval                int    `json:"interval"`
	}
	if _, err := e.post(ctx, as.DeviceAuthorizationEndpoint, "device authorization endpoint", as, ar.Client, form, nil, &da); err != nil {
		return nil, err
	}
	if da.DeviceCode == "" || da.VerificationURI == "" {
		return nil, errors.New("device authorization endpoint: the answer lacks device_code or verification_uri")
	}
	if err := e.Guard.CheckURL(da.VerificationURI, "verification URI"); err != nil {
		return nil, err
	}
	fmt.Fprintf(in.out(), "mcpgate: on any device, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" && e.Guard.CheckURL(da.VerificationURIComplete, "verification URI") == nil {
		fmt.Fprintf(in.out(), "mcpgate: or open %s\n", da.VerificationURIComplete)
	}
	interval := time.Duration(max(da.Interval, 5)) * time.Second
	deadline := e.Now().Add(time.Duration(max(da.ExpiresIn, 60)) * time.Second)
	poll := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {da.DeviceCode}}
	if !ar.NoResource {
		poll.Set("resource", ar.Discovery.Resource)
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
		t, err := e.TokenRequest(ctx, as, ar.Client, poll, ar.DPoP, ar.Scopes)
		var te *TokenError
		switch {
		case err == nil:
			return t, nil
		case errors.As(err, &te) && te.Code == "authorization_pending":
		case errors.As(err, &te) && te.Code == "slow_down":
			interval += 5 * time.Second
		default:
			return nil, err
		}
		if e.Now().After(deadline) {
			return nil, errors.New("the device code expired before the authorization was completed; run the command again")
		}
	}
}
