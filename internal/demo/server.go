// Package demo holds what `mcpgate demo` runs besides the gateway: a sample
// MCP server written with the official Go SDK, and a development token
// issuer so that the demo needs no configuration and no network.
package demo

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type echoIn struct {
	Message string `json:"message" jsonschema:"the text to echo"`
}

type addIn struct {
	A float64 `json:"a" jsonschema:"first addend"`
	B float64 `json:"b" jsonschema:"second addend"`
}

type sumOut struct {
	Sum float64 `json:"sum"`
}

type noteIn struct {
	ID string `json:"id" jsonschema:"the note to delete"`
}

// NewServer returns the sample MCP server over Streamable HTTP: tools with
// text, structured and image results, a long-running tool with progress,
// an admin tool the demo policy guards, a prompt with arguments, and a
// text resource.
func NewServer() http.Handler {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcpgate-demo", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echo a message back"},
		func(ctx context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Message}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "Add two numbers (structured result)"},
		func(ctx context.Context, _ *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, sumOut, error) {
			return nil, sumOut{Sum: in.A + in.B}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "tiny_image", Description: "An image result (16x16 PNG)"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "a small mcpgate-blue square:"},
				&mcp.ImageContent{Data: tinyPNG, MIMEType: "image/png"}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "long_task", Description: "Works for a few seconds and reports progress"},
		func(ctx context.Context, req *mcp.CallToolRequest, in longIn) (*mcp.CallToolResult, any, error) {
			steps := min(max(in.Steps, 1), 20)
			for i := 1; i <= steps; i++ {
				select {
				case <-ctx.Done():
					return nil, nil, ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
				if tok := req.Params.GetProgressToken(); tok != nil {
					_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i), Total: float64(steps),
						Message: fmt.Sprintf("step %d of %d", i, steps)})
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("done after %d steps", steps)}}}, nil, nil
		})
	var mu sync.Mutex // guards notes
	notes := map[string]bool{"1": true, "2": true}
	mcp.AddTool(s, &mcp.Tool{Name: "admin_delete_note", Description: "Delete a note (needs scope mcp:admin at the gateway)"},
		func(ctx context.Context, _ *mcp.CallToolRequest, in noteIn) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			defer mu.Unlock()
			if !notes[in.ID] {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "no note " + in.ID}}}, nil, nil
			}
			delete(notes, in.ID)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "deleted note " + in.ID}}}, nil, nil
		})
	s.AddPrompt(&mcp.Prompt{Name: "greet", Description: "Greet someone", Arguments: []*mcp.PromptArgument{{Name: "name", Required: true}}},
		func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user",
				Content: &mcp.TextContent{Text: fmt.Sprintf("Say hello to %s.", req.Params.Arguments["name"])}}}}, nil
		})
	s.AddResource(&mcp.Resource{URI: "demo://readme", Name: "readme", MIMEType: "text/plain", Description: "About this demo"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain",
				Text: "This MCP server sits behind mcpgate: every request you see here carried a verified token."}}}, nil
		})
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{DisableLocalhostProtection: true})
}

type longIn struct {
	Steps int `json:"steps" jsonschema:"number of steps (1-20), 200 ms each"`
}

// tinyPNG is a 16x16 single-colour PNG, built once.
var tinyPNG = func() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for y := range 16 {
		for x := range 16 {
			img.Set(x, y, color.RGBA{R: 0x2f, G: 0x5b, B: 0xd3, A: 0xff})
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}()
