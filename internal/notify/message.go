package notify

import (
	"fmt"
	"strings"
	"time"
)

// Message is an event rendered for people in one language.
type Message struct {
	Kind     Kind
	Severity Severity
	// Title is one line without the "[crs]" tag.
	Title string
	// Lines are the details, one fact per line.
	Lines []string
	// Instance is the crs that raised it; At when.
	Instance string
	At       time.Time
	// Footer names the instance and the time.
	Footer string
}

// Tag starts every message, so a DingTalk or Feishu keyword filter can be
// set to "crs".
const Tag = "[crs]"

// Subject is the title with the tag: the first line of a chat message, an
// e-mail subject.
func (m Message) Subject() string { return Tag + " " + m.Title }

// Body is the details and the footer, without the title.
func (m Message) Body() string {
	return strings.Join(m.Lines, "\n") + "\n\n" + m.Footer
}

// Text is the whole message as plain text.
func (m Message) Text() string { return m.Subject() + "\n\n" + m.Body() }

// renderer turns events into messages.
type renderer struct {
	loc      *time.Location
	instance string
}

// forever is the rest length past which an end time is not worth
// printing: blocked accounts rest "until reset".
const forever = 365 * 24 * time.Hour

// render writes ev in lang (LangEnglish or LangChinese) as seen at now.
func (r renderer) render(ev Event, lang string, now time.Time) Message {
	zh := lang == LangChinese
	t := func(en, cn string) string {
		if zh {
			return cn
		}
		return en
	}
	m := Message{Kind: ev.Kind, Severity: ev.Kind.Severity()}
	name, label := "", ""
	if a := ev.Account; a != nil {
		name = orDefault(a.Name, string(a.ID))
		label = fmt.Sprintf("%s (%s, %s)", name, a.ID, a.Platform)
		if zh {
			label = fmt.Sprintf("%s（%s，%s）", name, a.ID, a.Platform)
		}
	}
	add := func(s string) { m.Lines = append(m.Lines, s) }
	account := func() { add(t("Account: ", "账号：") + label) }
	reason := func(en, cn string) {
		if ev.Reason != "" {
			add(t(en, cn) + ev.Reason)
		}
	}
	when := func(u time.Time) string {
		s := u.In(r.loc).Format("2006-01-02 15:04:05 MST")
		if d := u.Sub(now); d > 0 {
			s += t(" (in "+duration(d, false)+")", "（"+duration(d, true)+"后）")
		}
		return s
	}

	switch ev.Kind {
	case AccountRateLimited:
		m.Title = t("Account rate-limited: ", "账号被限流：") + name
		account()
		if ev.Family != "" {
			add(t("Model family: ", "模型系列：") + ev.Family + t(" (other models still go to the account)", "（其他模型仍可使用该账号）"))
		}
		if !ev.Until.IsZero() {
			add(t("Resting until: ", "暂停调度至：") + when(ev.Until))
		}
		reason("Reason: ", "原因：")
		add(t("crs routes around it and says so when it serves again.", "crs 会绕开该账号，恢复后会再通知。"))
	case AccountRecovered:
		m.Title = t("Account recovered: ", "账号已恢复：") + name
		account()
		was := map[Kind][2]string{
			AccountRateLimited:    {"rate-limited", "限流"},
			AccountCredentialDead: {"credential dead", "凭据失效"},
			AccountBlocked:        {"blocked", "被封禁"},
		}[ev.Was]
		if ev.Family != "" {
			was[0] += " for " + ev.Family
			was[1] = ev.Family + " " + was[1]
		}
		add(t("It serves requests again (was: "+was[0]+").", "该账号已重新参与调度（此前："+was[1]+"）。"))
	case AccountCoolingRepeatedly:
		m.Title = t("Account keeps cooling down: ", "账号反复进入冷却：") + name
		account()
		add(t(fmt.Sprintf("%d cooldowns within %s: the upstream keeps failing (5xx, overload or timeouts).", ev.Count, duration(CoolingSpan, false)),
			fmt.Sprintf("%s内冷却 %d 次：上游持续出错（5xx、过载或超时）。", duration(CoolingSpan, true), ev.Count)))
		reason("Last reason: ", "最近原因：")
	case AccountCredentialDead:
		m.Title = t("Account credential dead: ", "账号凭据失效：") + name
		account()
		reason("Reason: ", "原因：")
		add(t("Onboard the account again (crs accounts oauth start) or replace its API key; until then crs does not use it.",
			"请重新授权该账号（crs accounts oauth start）或更换 API Key；在此之前 crs 不会使用它。"))
	case AccountBlocked:
		m.Title = t("Account blocked: ", "账号被封禁：") + name
		account()
		reason("Reason: ", "原因：")
		id := ""
		if ev.Account != nil {
			id = string(ev.Account.ID)
		}
		add(t("The upstream reports the account or its organization disabled. crs keeps it out of scheduling until `crs accounts reset "+id+"`.",
			"上游报告该账号或其组织已被禁用。在执行 `crs accounts reset "+id+"` 之前，crs 不会再调度它。"))
	case AccountWindowWarning:
		m.Title = t("5-hour window almost used: ", "5 小时窗口即将用尽：") + name
		account()
		if !ev.Until.IsZero() {
			add(t("The window resets at ", "窗口重置时间：") + when(ev.Until) + t(".", "。"))
		}
		if ev.Paused {
			add(t("The account is paused until then (auto-pause on warning).", "该账号已暂停调度直至重置（预警时自动暂停）。"))
		}
	case AccountWindowResumed:
		m.Title = t("5-hour window reset: ", "5 小时窗口已重置：") + name
		account()
		add(t("A new 5-hour window has started; the account serves again.", "新的 5 小时窗口已开始，账号恢复调度。"))
	case KeyOverLimit:
		kname := ""
		if ev.Key != nil {
			kname = orDefault(ev.Key.Name, string(ev.Key.ID))
			add(t("Key: ", "Key：") + kname + " (" + string(ev.Key.ID) + ")")
		}
		m.Title = t("Key over its limit: ", "Key 超出限额：") + kname
		add(t("Limit: ", "限额：") + ev.Limit)
		reason("Detail: ", "详情：")
		if ev.Until.IsZero() {
			add(t("This limit does not reset by itself; raise it with crs keys update.", "该限额不会自动重置，可用 crs keys update 调整。"))
		} else {
			add(t("Resets: ", "重置时间：") + when(ev.Until))
		}
	case StoreUnreachable:
		m.Title = t("Store unreachable", "存储不可达")
		reason("The store does not answer: ", "存储无响应：")
		add(t("Requests that need it fail until it answers; usage records go to the spool.",
			"依赖存储的请求会失败，直到它恢复；用量记录会写入本地 spool。"))
	case StoreRecovered:
		m.Title = t("Store reachable again", "存储已恢复")
		add(t("The store answers again.", "存储已重新响应。"))
	case UsageSpooled:
		m.Title = t("Usage records spooled", "用量记录已写入 spool")
		add(t(fmt.Sprintf("%d usage records were not committed to the store in time and went to %s.", ev.Count, ev.File),
			fmt.Sprintf("%d 条用量记录未能及时写入存储，已保存到 %s。", ev.Count, ev.File)))
		add(t("crs serve stores them when it starts next; check the store with crs doctor.",
			"下次启动 crs serve 时会自动补录；请用 crs doctor 检查存储。"))
	case Test:
		m.Title = t("Test message", "测试消息")
		add(t("This channel ("+ev.Channel+") receives crs alerts.", "此通道（"+ev.Channel+"）可以接收 crs 告警。"))
	default:
		m.Title = string(ev.Kind)
		reason("", "")
	}
	at := ev.At
	if at.IsZero() {
		at = now
	}
	m.Instance, m.At = r.instance, at
	m.Footer = "crs · " + r.instance + " · " + at.In(r.loc).Format("2006-01-02 15:04:05 MST")
	return m
}

// duration prints d for people: seconds, minutes, hours and minutes, or
// days.
func duration(d time.Duration, zh bool) string {
	d = d.Round(time.Second)
	switch {
	case d >= forever:
		if zh {
			return "长期"
		}
		return "until reset"
	case d < time.Minute:
		if zh {
			return fmt.Sprintf("%d 秒", int(d.Seconds()))
		}
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		if zh {
			return fmt.Sprintf("%d 分钟", int(d.Minutes()))
		}
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		h, m := int(d.Hours()), int(d.Minutes())%60
		if zh {
			if m == 0 {
				return fmt.Sprintf("%d 小时", h)
			}
			return fmt.Sprintf("%d 小时 %d 分钟", h, m)
		}
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%02dm", h, m)
	}
	if zh {
		return fmt.Sprintf("%d 天", int(d.Hours())/24)
	}
	return fmt.Sprintf("%dd", int(d.Hours())/24)
}
