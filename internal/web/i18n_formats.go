package web

import (
	"fmt"

	"github.com/crs-relay/crs/internal/admin"
)

// Two packages below the console write English that reaches its pages:
// the management service's validation reasons (admin.InvalidError) and
// the relay's account test (AccountTester). Both stay English for the
// command line and the JSON API, and both hand the console the format
// and arguments a sentence was made of, so the console renders it in the
// page's language here.
//
// The Chinese is keyed by the English format string itself rather than by
// message keys. A key would be a second name for each rule, kept in
// admin and relay, packages that know nothing of the console's languages;
// the format is already unique to its rule, and the tests
// (i18n_formats_test.go) read every format from those packages' source,
// so a new or reworded one fails until it is translated here, and a
// translation whose format is gone fails too. A format missing here at
// run time shows in English, never blank.
//
// Arguments are embedded as they are. Most are names, numbers and times,
// but some are English written by yet another package (a URL parser's or
// the model-list parser's complaint, an upstream's error, a transport
// error): those arrive whole, as "%s" or "%v", and stay English inside a
// Chinese sentence. The channel checks of internal/notify keep their
// format too, and admin passes it on.

// formatsZH is the Chinese of each English format, with the same verbs;
// a translation may reorder the arguments with explicit indexes (%[2]s).
var formatsZH = map[string]string{
	// Formats that are a whole sentence of another package: it stays as
	// it was written (see above).
	"%s": "%s",
	"%v": "%v",

	// internal/admin: accounts.
	"must not be empty (claude, openai, gemini or droid)":                                            "不能为空（claude、openai、gemini 或 droid）",
	"%q is not one of claude, openai, gemini, droid":                                                 "%q 不是 claude、openai、gemini、droid 之一",
	"must not be empty (api-key, oauth or setup-token)":                                              "不能为空（api-key、oauth 或 setup-token）",
	"%q is not one of api-key, oauth, setup-token":                                                   "%q 不是 api-key、oauth、setup-token 之一",
	"droid accounts are not supported yet":                                                           "暂不支持 droid 账户",
	"%s %s accounts are onboarded with crs accounts oauth start --platform %s, not added with a key": "%s %s 账户需通过 crs accounts oauth start --platform %s 接入，不能用密钥添加",
	"must not be empty":                             "不能为空",
	"longer than %d bytes":                          "超过 %d 字节",
	"must not contain spaces or control characters": "不能包含空格或控制字符",
	"give the API root (such as https://api.anthropic.com); the relay appends /v1/messages": "请填写 API 根地址（例如 https://api.anthropic.com）；中转会自动追加 /v1/messages",
	"give the API root, not an endpoint; the relay appends the path the client asked for":   "请填写 API 根地址，而不是具体端点；中转会追加客户端请求的路径",
	"want 0 (no cap) to %d, got %d":                                                                  "应为 0（不限）到 %d，实际为 %d",
	"only API-key accounts have a daily quota in dollars; %s is a %s account":                        "只有 API Key 账户才有按美元计的每日额度；%s 是 %s 账户",
	"want a whole number from %d to %d, got %d":                                                      "应为 %d 到 %d 之间的整数，实际为 %d",
	"account %s is a %s account; onboard it again with crs accounts oauth instead":                   "账户 %s 是 %s 账户；请改用 crs accounts oauth 重新接入",
	"account %s is a %s account; group %s holds %s accounts":                                         "账户 %s 是 %s 账户；分组 %s 只容纳 %s 账户",
	"no account %q (see the accounts list)":                                                          "没有账户 %q（请查看账户列表）",
	"usage is only available for Claude subscription accounts (type oauth); this is a %s %s account": "只有 Claude 订阅账户（类型 oauth）才能查看用量；这是 %s %s 账户",
	"its access token expired at %s and has not been refreshed yet; the relay (crs serve) refreshes it ahead of use — check the account's status, then try again":                                  "其访问令牌已于 %s 过期，尚未刷新；中转服务（crs serve）会在使用前刷新——请检查账户状态后重试",
	"a setup-token account's token only has the user:inference scope, so it cannot read the subscription's usage; onboard the account with kind oauth (crs accounts oauth start) to see its quota": "setup-token 账户的令牌只有 user:inference 权限，无法读取订阅用量；请以 kind oauth 重新接入该账户（crs accounts oauth start）以查看额度",
	"this account's token lacks the user:profile scope, so it cannot read the subscription's usage; onboard the account with kind oauth (crs accounts oauth start) to see its quota":               "此账户的令牌缺少 user:profile 权限，无法读取订阅用量；请以 kind oauth 重新接入该账户（crs accounts oauth start）以查看额度",
	"the usage endpoint refused this account's token (HTTP 403), so it cannot read the subscription's usage; onboard the account with kind oauth (crs accounts oauth start) to see its quota":      "用量接口拒绝了此账户的令牌（HTTP 403），无法读取订阅用量；请以 kind oauth 重新接入该账户（crs accounts oauth start）以查看额度",

	// internal/admin: onboarding.
	"%q is not one of %s, %s":                                                             "%q 不是 %s、%s 之一",
	"%q has no OAuth onboarding (claude, openai or gemini)":                               "%q 不支持 OAuth 接入（支持 claude、openai 或 gemini）",
	"setup tokens exist for claude accounts only":                                         "只有 claude 账户才有 setup token",
	"unknown, already finished or expired (sessions last %s); start the onboarding again": "未知、已完成或已过期（会话有效期 %s）；请重新开始接入",
	"must not be empty; it is printed by the start step":                                  "不能为空；它在开始步骤中给出",
	"want a JSON object or a string holding one":                                          "需要 JSON 对象，或内容为 JSON 对象的字符串",
	"must be given: the contents of ~/.claude/.credentials.json":                          "必须提供：~/.claude/.credentials.json 的内容",

	// internal/notify: alert channels (admin passes them on).
	"at most 100 characters on one line":                            "最多 100 个字符，且只能有一行",
	"want en or zh-CN, got %q":                                      "应为 en 或 zh-CN，实际为 %q",
	"unknown event %q (known: %s)":                                  "未知事件 %q（可用：%s）",
	"the %s webhook URL is required":                                "必须填写 %s 的 Webhook URL",
	"the bot token (from @BotFather) is required":                   "必须填写机器人令牌（从 @BotFather 获取）",
	"the chat to post to is required":                               "必须填写要发送到的聊天",
	"the Bark device key is required":                               "必须填写 Bark 设备密钥",
	"must not be empty (one of %s)":                                 "不能为空（可选：%s）",
	"unknown channel type %q (one of %s)":                           "未知的渠道类型 %q（可选：%s）",
	"SMTP settings belong to smtp channels only":                    "只有 smtp 渠道才有 SMTP 设置",
	"only telegram channels have a chat":                            "只有 telegram 渠道才有聊天",
	"only telegram and bark channels have a token":                  "只有 telegram 和 bark 渠道才有令牌",
	"only webhook, dingtalk and feishu channels sign with a secret": "只有 webhook、dingtalk 和 feishu 渠道使用签名密钥",
	"the SMTP server is required":                                   "必须填写 SMTP 服务器",
	"want a host name or address without port (use smtp_port)":      "应为不带端口的主机名或地址（端口请填 smtp_port）",
	"want 1–65535, got %d":                                          "应为 1–65535，实际为 %d",
	"give both the SMTP user and password, or neither":              "SMTP 用户名和密码要么都填，要么都不填",
	"the sender address is required":                                "必须填写发件人地址",
	"not an e-mail address: %v":                                     "不是有效的电子邮件地址：%v",
	"at least one recipient is required":                            "至少需要一个收件人",
	"%q is not an e-mail address":                                   "%q 不是有效的电子邮件地址",
	"smtp channels have no URL (use smtp_host)":                     "smtp 渠道没有 URL（请填写 smtp_host）",
	"want an http:// or https:// URL":                               "应为 http:// 或 https:// 开头的 URL",

	// internal/admin: the JSON API's bodies.
	"empty; want a JSON object":             "为空；需要 JSON 对象",
	"JSON ends early":                       "JSON 提前结束",
	"invalid JSON at byte %d":               "第 %d 字节处的 JSON 无效",
	"want a JSON object":                    "需要 JSON 对象",
	"want a JSON %s":                        "需要 JSON %s",
	"unknown field":                         "未知字段",
	"unexpected data after the JSON object": "JSON 对象之后还有多余的数据",
	"want an RFC 3339 time such as 2030-01-02T15:04:05Z, or null": "需要 RFC 3339 时间（例如 2030-01-02T15:04:05Z）或 null",
	"want true, false, or null for the server's setting":          "应为 true、false，或 null（使用服务器设置）",
	"want 0 (Sunday) to 6 or a day name such as \"mon\"":          "应为 0（周日）到 6，或星期名称，例如 \"mon\"",
	"want a string such as \"30d\", \"1h\" or \"5m\", or null":    "需要字符串，例如 \"30d\"、\"1h\" 或 \"5m\"，或 null",
	"want an amount in US dollars such as 12.5":                   "需要美元金额，例如 12.5",

	// internal/admin: the admin's password.
	"is wrong":                            "不正确",
	"must be at least %d characters":      "至少需要 %d 个字符",
	"must be at most 72 bytes":            "最多 72 字节",
	"is the same as the current password": "与当前密码相同",

	// internal/admin: keys and their policy.
	"longer than %d characters":                            "超过 %d 个字符",
	"must not contain control characters":                  "不能包含控制字符",
	"a tag must not be empty":                              "标签不能为空",
	"tag %q is longer than %d characters":                  "标签 %q 超过 %d 个字符",
	"tag %q must not contain commas or control characters": "标签 %q 不能包含逗号或控制字符",
	"at most %d tags":                                      "最多 %d 个标签",
	"%q is not one of %s":                                  "%q 不是 %s 之一",
	"%s is not in the future":                              "%s 不是将来的时间",
	"a key expires either at a fixed time or a span after its first use, not both":    "密钥只能选择固定到期时间或首次使用后到期，不能同时设置",
	"want 0 (no limit) to %d, got %d":                                                 "应为 0（不限）到 %d，实际为 %d",
	"want 0 (Sunday) to 6 (Saturday) or a day name, got %d":                           "应为 0（周日）到 6（周六）或星期名称，实际为 %d",
	"want 0 to 23, got %d":                                                            "应为 0 到 23，实际为 %d",
	"want 0 (none) or %s to %s, got %s":                                               "应为 0（无）或 %s 到 %s，实际为 %s",
	"needs a binding: bind the key to an account or a group first":                    "需要绑定：请先将密钥绑定到账户或分组",
	"must not be negative":                                                            "不能为负数",
	"needs a rate window to count in":                                                 "需要先设置限流窗口才能计数",
	"a window needs a request, token or cost limit":                                   "窗口需要设置请求数、Token 数或费用上限",
	"a platform must not be empty (claude, openai, gemini or droid)":                  "平台不能为空（claude、openai、gemini 或 droid）",
	"a model name must not be empty":                                                  "模型名称不能为空",
	"model name %q is longer than %d bytes":                                           "模型名称 %q 超过 %d 字节",
	"%q: a model name has only letters, digits and . _ : / @ - [ ], and may end in *": "%q：模型名称只能包含字母、数字和 . _ : / @ - [ ]，末尾可以是 *",
	"at most %d models":                                                               "最多 %d 个模型",
	"no group %q (see the groups list)":                                               "没有分组 %q（请查看分组列表）",
	"no account %q (see the accounts list; a group is group:ID)":                      "没有账户 %q（请查看账户列表；分组写作 group:ID）",
	"rate for %s must be above 0 and at most %d, got %v":                              "%s 的倍率必须大于 0 且不超过 %d，实际为 %v",
	"%s is given twice":                                                               "%s 重复出现",

	// internal/relay: the account test (accounttest.go).
	"no account %s":               "没有账户 %s",
	"cannot read the account: %v": "无法读取账户：%v",
	"→ %s (sent as %s) via %s\n":  "→ %s（按 %s 发送），经由账户 %s\n",
	"→ %s via %s\n":               "→ %s，经由账户 %s\n",
	"(%s; tested anyway)\n":       "（%s；仍然测试）\n",
	"(the access token was refused; it was refreshed, trying once more)\n": "（访问令牌被拒绝；已刷新，再试一次）\n",
	"crs cannot test %s accounts":                                          "crs 无法测试 %s 账户",
	"cannot build the test request: %v":                                    "无法构造测试请求：%v",
	"the account is disabled":                                              "账户已停用",
	"the account is resting (%s) until %s: %s":                             "账户暂停中（%s），直到 %s：%s",
	"the account is resting (%s) until %s":                                 "账户暂停中（%s），直到 %s",
	"the account is kept out of scheduling":                                "账户不参与调度",
	"cooling_down":                                                         "冷却中",
	"rate_limited":                                                         "已限流",
	"credential_dead":                                                      "凭据失效",
	"blocked":                                                              "已封禁",
	"the account cannot be used: %s":                                       "账户无法使用：%s",
	"could not reach the upstream: %v":                                     "无法连接上游：%v",
	"the upstream answered %d after %s: %s":                                "上游在 %[2]s后返回 %[1]d：%[3]s",
	"the upstream answered %d after %s: %s (relayed traffic would rest the account until %s; this test did not)": "上游在 %[2]s后返回 %[1]d：%[3]s（转发的请求会让账户暂停到 %[4]s；本次测试不会）",
	"the answer broke off: %v":                                    "回复中断：%v",
	"the answer is not readable: %v":                              "回复无法读取：%v",
	"the stream broke off: %v":                                    "流式回复中断：%v",
	"the upstream reported an error in the stream: %s":            "上游在流中报告了错误：%s",
	"the stream ended before the answer was complete":             "流在回复完成前就结束了",
	"the test ran out of time before the upstream finished":       "上游完成前测试已超时",
	"the test was stopped before the upstream finished":           "上游完成前测试已被停止",
	"no token counts reported":                                    "上游未报告 Token 数",
	"%d input / %d output tokens":                                 "输入 %d / 输出 %d Token",
	"%d input / %d output tokens, %d cache read / %d cache write": "输入 %d / 输出 %d Token，缓存读取 %d / 缓存写入 %d",
	"\n✓ %d in %s, %s (a test: not recorded as usage)\n":          "\n✓ %d，用时 %s，%s（测试请求：不计入用量）\n",
	"%.1f s": "%.1f 秒",
}

// Labels of the fields a validation reason can name (admin.InvalidError's
// Field, a JSON name), so a refusal reads "New password: …" rather than
// "new_password: …". The test reads the field names from the source too.
func init() {
	messages(map[string]msg{
		"field.account":           {"Account", "账户"},
		"field.account_id":        {"Account", "账户"},
		"field.activate_for":      {"Expires after first use", "首次使用后到期"},
		"field.api_key":           {"API key", "API Key"},
		"field.base_url":          {"Base URL", "Base URL"},
		"field.binding_fallback":  {"Fall back to the shared pool", "回退到共享账户池"},
		"field.body":              {"Request body", "请求体"},
		"field.chat_id":           {"Chat ID", "聊天 ID"},
		"field.clients":           {"Clients", "客户端"},
		"field.code":              {"Authorization code", "授权码"},
		"field.concurrency":       {"Requests at once", "并发请求数"},
		"field.credential":        {"Credential", "凭据"},
		"field.current_password":  {"Current password", "当前密码"},
		"field.daily_cost":        {"Cost per day", "每日费用"},
		"field.daily_opus_cost":   {"Cost per day on Opus models", "每日 Opus 模型费用"},
		"field.daily_quota":       {"Daily quota", "每日额度"},
		"field.description":       {"Description", "描述"},
		"field.disabled":          {"Disabled", "停用"},
		"field.events":            {"Events", "事件"},
		"field.expires_at":        {"Expires at", "到期时间"},
		"field.from":              {"Sender", "发件人"},
		"field.kind":              {"Kind", "类型"},
		"field.lang":              {"Language", "语言"},
		"field.max_concurrency":   {"Max concurrent requests", "最大并发请求数"},
		"field.models":            {"Models", "模型"},
		"field.models_allow":      {"Allowed models", "允许的模型"},
		"field.models_deny":       {"Denied models", "禁止的模型"},
		"field.name":              {"Name", "名称"},
		"field.new_password":      {"New password", "新密码"},
		"field.permissions":       {"Pools", "可用服务"},
		"field.platform":          {"Platform", "平台"},
		"field.priority":          {"Priority", "优先级"},
		"field.proxy":             {"Proxy", "代理"},
		"field.queue":             {"Over the limit", "超出并发时"},
		"field.rate_cost":         {"Cost per window", "每窗口费用"},
		"field.rate_requests":     {"Requests per window", "每窗口请求数"},
		"field.rate_tokens":       {"Tokens per window", "每窗口 Token 数"},
		"field.rate_window":       {"Rate window", "限流窗口"},
		"field.secret":            {"Signing secret", "签名密钥"},
		"field.service_rates":     {"Cost multipliers", "费用倍率"},
		"field.session_id":        {"Onboarding session", "接入会话"},
		"field.smtp_host":         {"SMTP server", "SMTP 服务器"},
		"field.smtp_password":     {"SMTP password", "SMTP 密码"},
		"field.smtp_port":         {"SMTP port", "SMTP 端口"},
		"field.tags":              {"Tags", "标签"},
		"field.to":                {"Recipients", "收件人"},
		"field.token":             {"Token", "令牌"},
		"field.total_cost":        {"Cost in total", "总费用"},
		"field.type":              {"Type", "类型"},
		"field.url":               {"URL", "URL"},
		"field.weekly_cost":       {"Cost per week", "每周费用"},
		"field.weekly_reset_day":  {"Week starts on", "每周起始日"},
		"field.weekly_reset_hour": {"Week starts at hour", "每周起始小时"},
	})
}

// sayIn renders an English format of a package below the console in
// lang: its Chinese from formatsZH when lang is Chinese and it has one,
// else the format as it is, so a missing translation shows English, not
// nothing.
func sayIn(lang, format string, args ...any) string {
	if lang == langZH {
		if zh, ok := formatsZH[format]; ok {
			format = zh
		}
	}
	return fmt.Sprintf(format, args...)
}

// say renders an English format of a package below the console in the
// view's language; it is what the console hands the account tester.
func (v *view) say(format string, args ...any) string { return sayIn(v.Lang, format, args...) }

// fieldLabel is the label of a field a validation reason names, or the
// field's own name for one without a label.
func fieldLabel(v *view, field string) string {
	if _, ok := catalog["field."+field]; ok {
		return v.T("field." + field)
	}
	return field
}

// invalidReason is inv's reason in v's language. An InvalidError without a
// format was built by hand: by the console itself, already in v's
// language, or around another package's English message, which is all
// there is to show.
func invalidReason(v *view, inv *admin.InvalidError) string {
	if inv.Format == "" {
		return inv.Reason
	}
	return v.say(inv.Format, inv.Args...)
}

// invalidText is the sentence for a refused input: the field's label and
// the reason, both in v's language.
func invalidText(v *view, inv *admin.InvalidError) string {
	return v.T("error.invalid", fieldLabel(v, inv.Field), invalidReason(v, inv))
}
