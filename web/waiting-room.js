// The waiting room of one schedule, as the buyer sees it: it joins the line, follows the
// Queue-Token's event stream (polling at `pollAfterMs` while no stream can be had), and on
// the buyer's turn shows the seat map (revalidated by its ETag), best-available and picked
// holds with their countdown, the balance and payment, and the buyer's own reservations.
// It talks only to the public JSON API, with the identity the embedding site put in the
// URL's fragment (README, "The waiting-room page"); every refusal is shown as a sentence.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const MAP_REFRESH_MS = 2000;
  // While the stream cannot be had, poll; try the stream again after this long (growing).
  const STREAM_RETRY_MS = 5000;
  const STREAM_RETRY_MAX_MS = 60000;
  const won = new Intl.NumberFormat('en-US');
  const krw = (amount) => `₩${won.format(amount)}`;
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const jitter = (ms) => ms * (0.75 + Math.random() / 2);

  const S = {
    jwt: null,
    userId: null,
    concertId: null,
    scheduleId: null,
    token: null,
    status: null,
    ended: false,
    firstPosition: null,
    lastAnnounced: null,
    opensAt: null,
    activeUntil: null,
    hold: null,
    paid: null,
    balance: null,
    map: { etag: null, seats: [] },
    selected: new Set(),
    stream: null,
    cursor: 0,
    openingTicks: false,
    turnTicks: false,
  };

  // ----- Identity and where we are -----

  /** The claims of a JWT, unverified: the server verifies; the page only needs `sub`. */
  function claims(jwt) {
    try {
      const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    } catch {
      return null;
    }
  }

  /** The identity from `#identity=…` (then kept for this tab and taken out of the URL). */
  function readIdentity() {
    const given = new URLSearchParams(location.hash.slice(1)).get('identity');
    if (given) {
      sessionStorage.setItem('seatrush.identity', given);
      history.replaceState(null, '', location.pathname + location.search);
    }
    const jwt = given || sessionStorage.getItem('seatrush.identity');
    const sub = jwt && claims(jwt)?.sub;
    if (typeof sub !== 'string' || !/^[1-9][0-9]*$/.test(sub)) return false;
    S.jwt = jwt;
    S.userId = Number(sub);
    return true;
  }

  const tokenKey = () => `seatrush.token.${S.userId}.${S.scheduleId}`;

  // ----- The API -----

  class ApiError extends Error {
    constructor(code, status, error, retryAfter) {
      super(code);
      this.code = code;
      this.status = status;
      this.details = error?.details || {};
      this.retryAfter = retryAfter;
    }
  }

  function headers(extra) {
    const out = { Authorization: `Bearer ${S.jwt}`, ...extra };
    if (S.token) out['Queue-Token'] = S.token;
    return out;
  }

  /** One call: `{status, data, etag}`, or an ApiError named by the API's error code. */
  async function api(method, path, { body, key, etag } = {}) {
    const extra = {};
    if (body !== undefined) extra['Content-Type'] = 'application/json';
    if (key) extra['Idempotency-Key'] = key;
    if (etag) extra['If-None-Match'] = etag;
    let rsp;
    try {
      rsp = await fetch(path, {
        method,
        headers: headers(extra),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError('NETWORK', 0);
    }
    if (rsp.status === 304) return { status: 304, etag };
    const json = await rsp.json().catch(() => null);
    if (!rsp.ok) {
      const code = json?.error?.code || (rsp.status >= 500 ? 'SERVICE_UNAVAILABLE' : `HTTP_${rsp.status}`);
      const retryAfter = Number(rsp.headers.get('Retry-After')) || null;
      throw new ApiError(code, rsp.status, json?.error, retryAfter);
    }
    return { status: rsp.status, data: json?.data, etag: rsp.headers.get('ETag') };
  }

  const newKey = () =>
    'wr-' + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');

  // Refusals of a join that joining again cannot change.
  const FINAL = new Set([
    'AUTH_REQUIRED',
    'AUTH_INVALID',
    'TOKEN_ALREADY_ISSUED',
    'BOOKING_CLOSED',
    'CONCERT_NOT_FOUND',
    'SCHEDULE_NOT_FOUND',
    'USER_NOT_FOUND',
  ]);

  const TRANSIENT = new Set(['NETWORK', 'SERVICE_UNAVAILABLE', 'RATE_LIMITED', 'REQUEST_IN_PROGRESS', 'INTERNAL']);

  /** Says a refusal will be tried again, and in how long: its Retry-After, else about
   * `backoffMs`. Returns that wait. */
  function sayRetrying(e, backoffMs) {
    const wait = e.retryAfter ? e.retryAfter * 1000 : jitter(backoffMs);
    showAlert(`${sentence(e)} Trying again in ${Math.ceil(wait / 1000)} s.`);
    return wait;
  }

  /** `call` again after a transient refusal (Retry-After, else backing off), saying so. */
  async function retrying(call) {
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await call();
        clearAlert();
        return result;
      } catch (e) {
        if (!(e instanceof ApiError) || !TRANSIENT.has(e.code)) throw e;
        await sleep(sayRetrying(e, Math.min(30000, 1000 * 2 ** attempt)));
      }
    }
  }

  /** What a refusal means to the buyer. */
  function sentence(e) {
    const d = e.details || {};
    switch (e.code) {
      case 'NETWORK':
        return 'The connection was lost.';
      case 'SERVICE_UNAVAILABLE':
      case 'INTERNAL':
        return 'The service is busy or briefly unavailable.';
      case 'RATE_LIMITED':
        return 'Too many requests at once: slowing down.';
      case 'REQUEST_IN_PROGRESS':
        return 'Your last request is still being processed.';
      case 'AUTH_REQUIRED':
      case 'AUTH_INVALID':
        return 'Your sign-in is missing or has expired. Open the waiting room again from the ticketing site.';
      case 'QUEUE_TOKEN_MISSING':
      case 'QUEUE_TOKEN_INVALID':
      case 'QUEUE_TOKEN_NOT_ACTIVE':
        return 'Your turn has ended.';
      case 'FORBIDDEN':
        return 'That belongs to another account.';
      case 'CONCERT_NOT_FOUND':
      case 'SCHEDULE_NOT_FOUND':
        return 'This performance does not exist.';
      case 'USER_NOT_FOUND':
        return 'Your account is not known to the ticketing service.';
      case 'TOKEN_ALREADY_ISSUED':
        return 'You already have a place in this line, in another window or on another device. Continue there.';
      case 'BOOKING_NOT_OPEN':
        return 'Booking for this performance has not opened yet.';
      case 'BOOKING_CLOSED':
        return 'Booking for this performance has closed.';
      case 'QUEUE_FULL':
        return 'The waiting room is full right now. Try again in a little while.';
      case 'SEAT_ALREADY_RESERVED':
        return 'Someone else just took one of those seats. The map is up to date again: choose again.';
      case 'NOT_ENOUGH_SEATS':
        return d.available === 0
          ? 'Sold out: no seats are left.'
          : `Not enough seats left: only ${d.available} remain.`;
      case 'SEAT_LIMIT_EXCEEDED':
        return 'That is more seats than one buyer may hold.';
      case 'INSUFFICIENT_BALANCE':
        return 'Your balance is not enough to pay for these seats. Charge it first.';
      case 'RESERVATION_EXPIRED':
        return 'Your hold has expired and its seats went back on sale.';
      case 'RESERVATION_ALREADY_PAID':
        return 'This hold is already paid.';
      case 'PAYMENT_IN_PROGRESS':
        return 'Your payment is being processed.';
      case 'RESERVATION_NOT_PAYABLE':
      case 'RESERVATION_NOT_CANCELLABLE':
        return 'This hold can no longer be changed.';
      case 'INVALID_REQUEST':
        return 'That request was not valid.';
      default:
        return `Something went wrong (${e.code}).`;
    }
  }

  // ----- What is on screen -----

  function show(section) {
    for (const id of ['choose', 'queue', 'sale', 'done']) $(id).hidden = id !== section;
  }

  function showAlert(text, kind) {
    const alert = $('alert');
    alert.textContent = text;
    alert.className = kind === 'info' ? 'alert info' : 'alert';
    alert.hidden = false;
  }

  function clearAlert() {
    $('alert').hidden = true;
  }

  function announce(text) {
    $('announce').textContent = text;
  }

  const clock = (ms) => {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  };

  function busy(button, on) {
    button.disabled = on;
    button.setAttribute('aria-busy', String(on));
  }

  // ----- The line -----

  async function join() {
    S.token = localStorage.getItem(tokenKey());
    S.ended = false;
    show('queue');
    $('position').textContent = 'Joining the line…';
    if (!S.token) {
      const key = newKey();
      try {
        const { data } = await retrying(() =>
          api('POST', '/api/v1/queue/tokens', { body: { userId: S.userId, scheduleId: S.scheduleId }, key }),
        );
        S.token = data.token;
        localStorage.setItem(tokenKey(), S.token);
        place(data);
      } catch (e) {
        return finish('You are not in line', sentence(e), !FINAL.has(e.code));
      }
    }
    follow();
  }

  /** A WAITING token's place (issuance, status, `position` events), or the turn. */
  function place(p) {
    if (p.status === 'ACTIVE') return activate(p.activeUntil);
    S.status = 'WAITING';
    show('queue');
    if (p.preQueue && p.queuePosition === null) {
      S.opensAt = Date.parse(p.bookingOpenAt);
      $('queue-title').textContent = 'You are in the pre-queue';
      $('estimate').textContent =
        'Places in line are drawn at random when booking opens: everyone who joins before then has the same chance.';
      if (!S.openingTicks) tickOpening();
      return;
    }
    S.opensAt = null;
    $('queue-title').textContent = 'You are in line';
    const pos = p.queuePosition;
    if (typeof pos !== 'number') return;
    S.firstPosition = Math.max(S.firstPosition || 0, pos);
    $('position').textContent = pos <= 1 ? 'You are next' : `No. ${won.format(pos)} in line`;
    const progress = $('progress');
    progress.max = S.firstPosition;
    progress.value = S.firstPosition - pos;
    progress.setAttribute('aria-valuetext', `${won.format(pos)} ahead of the turn`);
    const minutes = p.estimatedWaitTimeMinutes;
    $('estimate').textContent =
      minutes < 1 ? 'Less than a minute to go.' : `About ${minutes} minute${minutes === 1 ? '' : 's'} to go.`;
    document.title = `(${won.format(pos)}) Waiting room · seatrush`;
    if (S.lastAnnounced !== pos) {
      S.lastAnnounced = pos;
      announce(`You are number ${pos} in line. ${$('estimate').textContent}`);
    }
  }

  /** The countdown to the opening, once a second while in the pre-queue (one at a time). */
  function tickOpening() {
    S.openingTicks = S.opensAt !== null && S.status === 'WAITING';
    if (!S.openingTicks) return;
    const left = S.opensAt - Date.now();
    $('position').textContent = left > 0 ? `Booking opens in ${clock(left)}` : 'Drawing places…';
    setTimeout(tickOpening, 1000);
  }

  /** The token's event stream, while the token lives; polling while it cannot be had. */
  async function follow() {
    let failures = 0;
    while (!S.ended) {
      let rsp = null;
      S.stream = new AbortController();
      try {
        rsp = await fetch('/api/v1/queue/tokens/me/events', { headers: headers(), cache: 'no-store', signal: S.stream.signal });
      } catch {
        rsp = null;
      }
      if (S.ended) return;
      if (rsp?.ok) {
        failures = 0;
        clearAlert();
        if (await readEvents(rsp.body)) return;
        // The server closed the stream (a restart): it sends the state first on the next.
        await sleep(jitter(1000));
        continue;
      }
      if (rsp && (rsp.status === 401 || rsp.status === 403)) {
        const json = await rsp.json().catch(() => null);
        return ended(json?.error?.code === 'QUEUE_TOKEN_INVALID' ? 'EXPIRED' : null, json?.error?.code);
      }
      failures += 1;
      const retryAt = Date.now() + Math.min(STREAM_RETRY_MAX_MS, STREAM_RETRY_MS * failures);
      while (!S.ended && Date.now() < retryAt) {
        if (S.status === 'ACTIVE') {
          await sleep(retryAt - Date.now());
          break;
        }
        await sleep(await poll());
      }
    }
  }

  /** One status read; how long to wait before the next (`pollAfterMs`). */
  async function poll() {
    try {
      const { data } = await api('GET', '/api/v1/queue/tokens/me');
      clearAlert();
      place(data);
      return Math.max(500, data.pollAfterMs);
    } catch (e) {
      if (e.status === 401 || e.status === 403) {
        ended(e.code === 'QUEUE_TOKEN_INVALID' ? 'EXPIRED' : null, e.code);
        return 0;
      }
      return sayRetrying(e, 3000);
    }
  }

  /** Reads server-sent events until the stream closes; true once the token has ended. */
  async function readEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return false;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (!data) continue; // a keep-alive comment
          const payload = JSON.parse(data);
          if (event === 'position') place({ ...payload, status: 'WAITING' });
          else if (event === 'active') activate(payload.activeUntil);
          else if (event === 'ended') {
            ended(payload.status);
            return true;
          }
        }
      }
    } catch {
      return S.ended;
    }
  }

  async function leave() {
    busy($('leave'), true);
    try {
      await retrying(() => api('DELETE', '/api/v1/queue/tokens/me'));
      ended('LEFT');
    } catch (e) {
      if (e.status === 401) ended('EXPIRED', e.code);
      else showAlert(sentence(e));
    } finally {
      busy($('leave'), false);
    }
  }

  /** The token has ended: why, in words, and what the buyer can do next. */
  function ended(status, code) {
    if (S.ended) return;
    S.ended = true;
    S.status = status;
    S.stream?.abort();
    localStorage.removeItem(tokenKey());
    if (S.paid) return; // the confirmation is on screen
    if (code === 'AUTH_INVALID' || code === 'AUTH_REQUIRED') return finish('Signed out', sentence({ code }), false);
    if (status === 'LEFT') return finish('You left the line', 'Your place went to the next person in line.', true);
    if (status === 'USED') return finish('Your purchase is complete', 'Your tickets are listed below.', true);
    finish('Your turn has ended', 'The time to buy ran out, and any seats you held went back on sale.', true);
  }

  function finish(title, text, canRejoin) {
    show('done');
    $('done-title').textContent = title;
    $('done-text').textContent = text;
    $('rejoin').hidden = !canRejoin;
    $('hold').hidden = true;
    document.title = `${title} · seatrush`;
    announce(`${title}. ${text}`);
    loadMine();
  }

  // ----- The turn: seat map, holds, balance, payment -----

  /** The turn has come; `activeUntil` is unknown when the token was ACTIVE at issuance. */
  function activate(activeUntil) {
    const until = Date.parse(activeUntil);
    if (!Number.isNaN(until)) S.activeUntil = until;
    else if (S.activeUntil === null) readActiveUntil();
    if (S.status === 'ACTIVE') return;
    S.status = 'ACTIVE';
    show('sale');
    clearAlert();
    document.title = 'Your turn · seatrush';
    announce('It is your turn: choose seats and pay.');
    $('sale-title').focus?.();
    if (!S.turnTicks) tickTurn();
    refreshMap();
    loadBalance();
    loadMine();
  }

  /** One status read, for when the turn ends. */
  async function readActiveUntil() {
    try {
      const { data } = await retrying(() => api('GET', '/api/v1/queue/tokens/me'));
      if (data.status === 'ACTIVE') S.activeUntil = Date.parse(data.activeUntil);
    } catch (e) {
      if (e.status === 401 || e.status === 403) ended('EXPIRED', e.code);
    }
  }

  /** The turn's and the hold's countdowns, four times a second during the turn (one at a time). */
  function tickTurn() {
    S.turnTicks = S.status === 'ACTIVE' && !S.ended;
    if (!S.turnTicks) return;
    $('turn-left').textContent =
      S.activeUntil === null ? 'Your turn has begun.' : `Time left to buy: ${clock(S.activeUntil - Date.now())}`;
    if (S.hold && !S.hold.expired) {
      const holdLeft = S.hold.expiresAt - Date.now();
      $('hold-left').textContent = `Pay within ${clock(holdLeft)}`;
      if (holdLeft <= 0) holdExpired();
    }
    setTimeout(tickTurn, 250);
  }

  const seatsPath = () => `/api/v1/concerts/${S.concertId}/schedules/${S.scheduleId}/seats?view=map`;

  /** The seat map now, then every MAP_REFRESH_MS while it is the turn and the page is seen. */
  async function refreshMap() {
    clearTimeout(S.mapTimer);
    // A page in a background tab waits: becoming visible refreshes it.
    if (S.status !== 'ACTIVE' || S.ended || document.visibilityState === 'hidden') return;
    try {
      const rsp = await api('GET', seatsPath(), { etag: S.map.etag });
      if (rsp.status !== 304) {
        S.map = { etag: rsp.etag, seats: rsp.data.seats };
        const info = rsp.data.scheduleInfo;
        $('title').textContent = info.concertTitle;
        $('subtitle').textContent = `${info.performanceDate} ${info.performanceTime.slice(0, 5)} · ${info.venueName}`;
        drawMap();
      }
      const open = S.map.seats.filter((s) => s.status === 'AVAILABLE').length;
      $('map-status').textContent = open === 0 ? 'Sold out.' : `${won.format(open)} seats available.`;
    } catch (e) {
      if (e.code?.startsWith('QUEUE_TOKEN')) return ended('EXPIRED', e.code);
      if (!TRANSIENT.has(e.code)) showAlert(sentence(e));
    }
    S.mapTimer = setTimeout(refreshMap, MAP_REFRESH_MS);
  }

  function seatState(seat) {
    if (S.hold && !S.hold.expired && S.hold.seatIds.has(seat.seatId)) return 'mine';
    if (seat.status !== 'AVAILABLE') return seat.status.toLowerCase();
    return S.selected.has(seat.seatId) ? 'selected' : 'available';
  }

  const STATE_WORDS = {
    available: 'available',
    selected: 'chosen',
    mine: 'held by you',
    held: 'held by someone else',
    sold: 'sold',
  };

  /**
   * Draws the map, reusing the buttons when the seats are the same ones. The map is one tab
   * stop (a roving tabindex): arrow keys, Home and End move between seats, Enter or Space
   * chooses one, so a keyboard reaches the hold button past 10 000 seats in one Tab. Seats
   * that cannot be chosen stay focusable (`aria-disabled`), so their state can be read.
   */
  function drawMap() {
    const map = $('map');
    const seats = S.map.seats;
    if (map.children.length !== seats.length) {
      const fragment = document.createDocumentFragment();
      for (const seat of seats) {
        const button = document.createElement('button');
        button.type = 'button';
        button.tabIndex = -1;
        button.dataset.seat = String(seat.seatId);
        button.textContent = String(seat.seatNumber);
        fragment.append(button);
      }
      map.replaceChildren(fragment);
      S.cursor = Math.max(0, seats.findIndex((s) => s.status === 'AVAILABLE'));
      if (map.children[S.cursor]) map.children[S.cursor].tabIndex = 0;
    }
    for (const available of [...S.selected]) {
      if (!seats.some((s) => s.seatId === available && s.status === 'AVAILABLE')) S.selected.delete(available);
    }
    const holding = Boolean(S.hold && !S.hold.expired);
    seats.forEach((seat, i) => {
      const button = map.children[i];
      const state = seatState(seat);
      button.className = `seat ${state}`;
      const choosable = (state === 'available' || state === 'selected') && !holding;
      button.setAttribute('aria-disabled', String(!choosable));
      button.setAttribute('aria-pressed', String(state === 'selected'));
      button.setAttribute('aria-label', `Seat ${seat.seatNumber}, ${krw(seat.price)}, ${STATE_WORDS[state]}`);
    });
    const picked = S.selected.size;
    $('hold-picked').disabled = picked === 0 || holding;
    $('hold-picked').textContent = picked === 0 ? 'Hold the chosen seats' : `Hold the ${picked} chosen seat${picked === 1 ? '' : 's'}`;
    $('hold-best').disabled = holding;
  }

  function pickSeat(event) {
    const button = event.target.closest('button[data-seat]');
    if (!button) return;
    moveCursor([...$('map').children].indexOf(button), false);
    if (button.getAttribute('aria-disabled') === 'true') return;
    const id = Number(button.dataset.seat);
    if (S.selected.has(id)) S.selected.delete(id);
    else S.selected.add(id);
    drawMap();
  }

  /** Makes seat `index` the map's tab stop (and focuses it, when `focus`). */
  function moveCursor(index, focus) {
    const seats = $('map').children;
    if (index < 0 || index >= seats.length) return;
    if (seats[S.cursor]) seats[S.cursor].tabIndex = -1;
    S.cursor = index;
    seats[index].tabIndex = 0;
    if (focus) seats[index].focus();
  }

  function mapKeys(event) {
    const map = $('map');
    const columns = getComputedStyle(map).gridTemplateColumns.split(' ').length || 1;
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[event.key];
    let to = null;
    if (step !== undefined) to = S.cursor + step;
    else if (event.key === 'Home') to = 0;
    else if (event.key === 'End') to = map.children.length - 1;
    if (to === null) return;
    event.preventDefault();
    moveCursor(Math.min(Math.max(to, 0), map.children.length - 1), true);
  }

  async function hold(request, button) {
    busy(button, true);
    try {
      const { data } = await api('POST', '/api/v1/reservations', {
        body: { userId: S.userId, scheduleId: S.scheduleId, ...request },
        key: newKey(),
      });
      S.hold = {
        id: data.reservationId,
        number: data.reservationNumber,
        seats: data.seats,
        seatIds: new Set(data.seats.map((s) => s.seatId)),
        total: data.totalAmount,
        expiresAt: Date.parse(data.expiresAt),
        expired: false,
      };
      S.selected.clear();
      clearAlert();
      showHold();
      announce(`Held ${describeSeats(S.hold.seats)} for ${krw(S.hold.total)}. Pay within ${clock(S.hold.expiresAt - Date.now())}.`);
    } catch (e) {
      if (e.code?.startsWith('QUEUE_TOKEN')) return ended('EXPIRED', e.code);
      showAlert(sentence(e));
    } finally {
      busy(button, false);
      refreshMap();
    }
  }

  const describeSeats = (seats) =>
    `seat${seats.length === 1 ? '' : 's'} ${seats.map((s) => s.seatNumber).join(', ')}`;

  function showHold() {
    $('hold').hidden = false;
    $('hold-seats').textContent = `${describeSeats(S.hold.seats)} · ${krw(S.hold.total)} · reservation ${S.hold.number}`;
    $('pay').textContent = `Pay ${krw(S.hold.total)}`;
    $('pay').disabled = false;
    $('cancel-hold').disabled = false;
    drawMap();
  }

  function holdExpired() {
    S.hold.expired = true;
    $('hold').hidden = true;
    showAlert(sentence({ code: 'RESERVATION_EXPIRED' }));
    announce(sentence({ code: 'RESERVATION_EXPIRED' }));
    refreshMap();
  }

  async function cancelHold() {
    busy($('cancel-hold'), true);
    try {
      await retrying(() => api('DELETE', `/api/v1/reservations/${S.hold.id}`));
      S.hold = null;
      $('hold').hidden = true;
      announce('Your seats went back on sale.');
    } catch (e) {
      showAlert(sentence(e));
    } finally {
      busy($('cancel-hold'), false);
      refreshMap();
    }
  }

  async function pay() {
    const button = $('pay');
    busy(button, true);
    const key = newKey();
    try {
      const { data } = await retrying(() =>
        api('POST', '/api/v1/payments', {
          body: { userId: S.userId, reservationId: S.hold.id, paymentMethod: 'BALANCE' },
          key,
        }),
      );
      S.paid = data;
      confirmation();
    } catch (e) {
      if (e.code === 'RESERVATION_EXPIRED') return holdExpired();
      if (e.code === 'INSUFFICIENT_BALANCE' && S.balance !== null) {
        $('charge-amount').value = String(Math.max(1, S.hold.total - S.balance));
      }
      showAlert(sentence(e));
      busy(button, false);
    }
  }

  function confirmation() {
    const p = S.paid;
    const seats = p.reservation?.seats || S.hold?.seats || [];
    S.status = 'PAID';
    clearTimeout(S.mapTimer);
    finish(
      'You have your tickets',
      `Paid ${krw(p.amount)} for ${describeSeats(seats)} (reservation ${p.reservation?.reservationNumber ?? p.reservationId}).`,
      false,
    );
  }

  async function loadBalance() {
    try {
      const { data } = await retrying(() => api('GET', `/api/v1/users/${S.userId}/balance`));
      showBalance(data.currentBalance);
    } catch (e) {
      showAlert(sentence(e));
    }
  }

  function showBalance(amount) {
    S.balance = amount;
    $('balance').textContent = krw(amount);
  }

  async function charge() {
    const amount = Number($('charge-amount').value);
    if (!Number.isSafeInteger(amount) || amount < 1) {
      showAlert('Enter an amount in whole won, above zero.');
      return;
    }
    const button = $('charge');
    busy(button, true);
    const key = newKey();
    try {
      const { data } = await retrying(() =>
        api('POST', `/api/v1/users/${S.userId}/balance/charge`, { body: { amount }, key }),
      );
      showBalance(data.currentBalance);
      announce(`Charged ${krw(amount)}. Your balance is ${krw(data.currentBalance)}.`);
      clearAlert();
    } catch (e) {
      showAlert(sentence(e));
    } finally {
      busy(button, false);
    }
  }

  /** The buyer's own reservations: readable with the identity alone, after the turn too. */
  async function loadMine() {
    try {
      const { data } = await api('GET', `/api/v1/users/${S.userId}/reservations?limit=20`);
      const list = $('mine-list');
      list.replaceChildren(
        ...data.reservations
          .filter((r) => r.scheduleId === S.scheduleId)
          .map((r) => {
            const item = document.createElement('li');
            item.textContent = `${r.reservationNumber}: ${describeSeats(r.seats)}, ${krw(r.totalAmount)}, ${r.status.toLowerCase()}`;
            return item;
          }),
      );
      $('mine').hidden = list.children.length === 0;
    } catch {
      // Not needed to buy; shown when it can be read.
    }
  }

  // ----- Start -----

  function chooser() {
    show('choose');
    $('choose-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      const identity = encodeURIComponent(String(form.get('identity')).trim());
      location.assign(`/waiting-room/${form.get('concert')}/${form.get('schedule')}#identity=${identity}`);
    });
  }

  function start() {
    const ids = location.pathname.match(/^\/waiting-room\/([1-9][0-9]*)\/([1-9][0-9]*)\/?$/);
    if (!ids) return chooser();
    S.concertId = Number(ids[1]);
    S.scheduleId = Number(ids[2]);
    $('subtitle').textContent = `Concert ${S.concertId}, schedule ${S.scheduleId}`;
    if (!readIdentity()) {
      show('done');
      $('done-title').textContent = 'Signed out';
      $('done-text').textContent = sentence({ code: 'AUTH_REQUIRED' });
      return;
    }
    $('leave').addEventListener('click', leave);
    $('map').addEventListener('click', pickSeat);
    $('map').addEventListener('keydown', mapKeys);
    $('hold-best').addEventListener('click', (e) => hold({ quantity: Number($('quantity').value) }, e.currentTarget));
    $('hold-picked').addEventListener('click', (e) => hold({ seatIds: [...S.selected] }, e.currentTarget));
    $('pay').addEventListener('click', pay);
    $('cancel-hold').addEventListener('click', cancelHold);
    $('charge').addEventListener('click', charge);
    $('rejoin').addEventListener('click', () => {
      Object.assign(S, {
        token: null,
        status: null,
        paid: null,
        hold: null,
        activeUntil: null,
        firstPosition: null,
        lastAnnounced: null,
      });
      S.map = { etag: null, seats: [] };
      join();
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') refreshMap();
    });
    join();
  }

  start();
})();
