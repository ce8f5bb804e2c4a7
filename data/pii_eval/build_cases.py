"""Regenerate ``cases.jsonl``, the hand-written PII evaluation set, with offsets computed rather than typed.

Messages are authored below with inline marks, ``[[KIND:value]]``; this script strips the marks, records each
value's character span, checks that every gold value is what it claims to be (Luhn for cards, mod-97 for
IBANs, a dialable number for phones, ``ipaddress`` for IPs) and that the card- and IBAN-like hard negatives
really fail those checks. Output is deterministic: same script, same bytes.

    .venv/bin/python data/pii_eval/build_cases.py
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import phonenumbers
from stdnum import iban, luhn

OUT = Path(__file__).with_name("cases.jsonl")
MARK = re.compile(r"\[\[([A-Z]+):(.+?)\]\]")
REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IE", "AU", "CA", "IN")


def card(prefix: str, groups: tuple[int, ...], sep: str) -> str:
    """A Luhn-valid number: ``prefix`` completed with its check digit, then grouped as cards are printed."""
    digits = prefix + luhn.calc_check_digit(prefix)
    assert len(digits) == sum(groups), (prefix, groups)
    parts, pos = [], 0
    for size in groups:
        parts.append(digits[pos : pos + size])
        pos += size
    return sep.join(parts)


def make_iban(country: str, bban: str, *, grouped: bool = True) -> str:
    """An IBAN for ``bban`` with its mod-97 check digits computed."""
    compact = country + "00" + bban
    value = country + iban.calc_check_digits(compact) + bban
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if grouped else value


G16, AMEX, DINERS, G19 = (4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3)

# ---------------------------------------------------------------- positives: one slot per template

EMAIL_TEMPLATES = [
    "Hi, please send the refund confirmation to {v} instead of my old address.",
    "I can't log in. My username is {v} and the reset link never arrives.",
    "Can you update the email on my account to {v}? The old one is closed.",
    "Contact me at {v} please, I don't check my phone at work.",
    "Receipt for order #A-10293847 should go to {v}",
    "my email is {v} and i still havent received the code",
    "Why was a statement sent to {v}? That isn't me.",
    "Please cc {v} on any reply about the disputed charge of £49.99.",
    "Someone changed my login email to {v} without my permission!!",
    "Email: {v}\nName: on file\nIssue: card not delivered",
    "The invoice dated 12/03/2024 was emailed to {v} but it's blank.",
    "I registered with {v}; can you merge it with my other profile?",
    "Replies to {v} bounce. Did you block my domain?",
    "Hello, this is about the chargeback. Reach me via {v}.",
    "Forwarding the screenshot from {v} as requested.",
    "Business account contact: {v} (finance team).",
    "Please unsubscribe {v} from the marketing list, thanks",
    "I got a phishing mail pretending to be you, sent to {v}.",
    "Use {v} for the direct debit notifications.",
    "Wrong address on file ({v}), please fix it.",
    "Is {v} the right contact for business loan questions?",
    "My partner's email, {v}, should be added as a secondary holder.",
    "Verification email to {v} expired after 10 minutes.",
    "Sent from {v} on 2024-03-12 at 09:15 — no answer yet.",
    "Please send the PDF statement for March to <{v}>.",
    "Ich habe keine Bestätigung an {v} erhalten.",
    "Mi correo es {v}, gracias.",
    "Account holder email -> {v}",
    "The app shows {v} but I changed it last week.",
    "mailto:{v} is what your website links to, is that right?",
]
EMAIL_VALUES = [
    "jane.doe@example.com",
    "tom.baker+refunds@mail.example.com",
    "a.nguyen@support.example.org",
    "PRIYA.SHARMA@EXAMPLE.NET",
    "o'connor.sean@example.ie",
    "maria_garcia92@example.es",
    "k-li@corp.example.com",
    "first.last@sub.domain.example.co.uk",
    "user.name+tag+sorting@example.com",
    "x@example.io",
    "mueller.j@example.de",
    "li.wei@shop.example.cn",
    "finance-team@acme-widgets.example.com",
    "noreply.bounce@example.net",
    "sam.o@example.com.au",
    "ap@northwind.example.org",
    "newsletter.fan+promo@example.com",
    "helen_89@example.co.uk",
    "dd-notify@example.org",
    "r.patel@example.in",
    "loans.enquiry@smallbiz.example.com",
    "chris.evans1985@example.com",
    "verify+3@example.net",
    "ola.nordmann@example.no",
    "statements@home.example.org",
    "jürgen.weiß@example.de",
    "carmen.lopez@correo.example.es",
    "holder.primary@example.com",
    "m.rossi@example.it",
    "support-escalations@example.com",
]

PHONE_TEMPLATES = [
    "Please call me back on {v} after 5pm.",
    "My mobile number changed to {v}, can you update it?",
    "I tried ringing {v} from your website but it just rings out.",
    "Text the code to {v} please, the old SIM is gone.",
    "You can reach me at {v} any time today.",
    "phone: {v}",
    "Best number to call is {v} (home).",
    "Someone from {v} called claiming to be your fraud team. Is that real?",
    "My new number is {v} since I moved.",
    "Call {v} — that's my husband's phone, he manages the account.",
    "I'm abroad, so please use {v} for the OTP.",
    "Ring me on {v}, I can't type much on this tablet.",
    "Missed a call from {v} about my loan. Who was it?",
    "Contact number for the delivery: {v}",
    "WhatsApp me on {v} if that's easier.",
    "The courier needs a phone number, use {v}.",
    "Your agent said to call {v} but it's disconnected.",
    "Please phone {v} between 9:00 and 12:00.",
    "Landline {v}, mobile is the same as on file.",
    "Got an SMS from {v} asking for my PIN!",
    "Update contact: {v}. Thanks, Anna",
    "My number ({v}) is registered but I don't get codes.",
    "Emergency contact is {v}.",
    "Can someone call {v}? I've been waiting on hold for 40 minutes.",
    "Numéro de téléphone : {v}",
    "Meine Telefonnummer ist {v}.",
    "Mi número es {v}, llámenme por favor.",
    "Il mio numero è {v}.",
    "Bel me op {v} alstublieft.",
    "Tel. {v}",
    "Reachable on {v} until Friday.",
    "Please stop calling {v}, I closed that account.",
    "The branch number {v} goes to voicemail.",
    "Verify me on {v}, I'm at the airport.",
    "Fax the form to {v}? Do people still fax?",
    "Dial {v} and ask for Sam.",
]
PHONE_VALUES = [
    "(202) 555-0143",
    "+44 7911 123456",
    "+1-202-555-0187",
    "+33 6 12 34 56 78",
    "202.555.0178",
    "+44 20 7946 0958",
    "020 7946 0321",
    "+1 646 555 0123",
    "07911 123456",
    "+44 (0)20 7946 0777",
    "+49 151 23456789",
    "0044 20 7946 0123",
    "1-800-555-0199",
    "+353 87 765 4321",
    "+91 98765 43210",
    "(416) 555-0165",
    "0161 496 0234",
    "+61 491 570 156",
    "030 12345678",
    "+12025550143",
    "+39 347 123 4567",
    "+1 (415) 555-0132",
    "+31 6 12345678",
    "212-555-0199",
    "+33 1 99 00 12 34",
    "+49 (0)30 1234 5678",
    "+34 912 345 678",
    "+39 06 1234 5678",
    "+31 20 123 4567",
    "+353 1 234 5678",
    "+61 2 9876 5432",
    "07911123456",
    "0113 496 0555",
    "+1.202.555.0111",
    "+91-22-2345-6789",
    "+1 604 555 0110",
]

CARD_TEMPLATES = [
    "My card {v} was declined at the checkout even though I have funds.",
    "Please block card {v}, I lost my wallet.",
    "I was charged £49.99 twice on {v}.",
    "card number {v} exp 09/27",
    "Can you check why {v} keeps failing for online payments?",
    "The replacement card {v} hasn't arrived after 2 weeks.",
    "Payment of $120.00 with {v} shows as pending since 2024-03-12.",
    "I typed {v} on a site that looked fake. What do I do?",
    "Unknown transaction on my Amex {v} for €89,00.",
    "Refund went to {v} instead of my new card.",
    "Is {v} still active? The app says frozen.",
    "Cancel the card {v} please, it was stolen at 14:30 today.",
    "My daughter's card ({v}) needs a higher limit.",
    "Apple Pay won't add {v}.",
    "Direct debit set to {v} by mistake.",
    "Mastercard {v} got charged a foreign fee.",
    "Please remove {v} from my saved cards.",
    "Transaction of ₹2,499 on {v} not recognised.",
    "Here is the card: {v}. Please fix the block.",
    "Visa debit {v} - contactless stopped working.",
    "Diners Club {v} was charged in USD.",
    "I need a new PIN for {v}.",
    "The ATM kept {v} this morning.",
    "Card {v} / order 88412 / amount 19.99",
    "Hi, card no. {v}, dispute please.",
    "Reissue {v} with my new surname.",
]
CARD_VALUES = [
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "4012888888881881",
    "4242 4242 4242 4242",
    card("453201511283036", G16, " "),
    "5105 1051 0510 5100",
    card("601100099013942", G16, "-"),
    card("411111111111122", G16, ""),
    "3782 822463 10005",
    card("535311112222333", G16, " "),
    "6011 1111 1111 1117",
    card("492900000000000", G16, "-"),
    card("222300312200322", G16, " "),
    "3530 1113 3330 0000",
    card("516730000000000", G16, ""),
    "5200 8282 8282 8210",
    card("400005665566555", G16, " "),
    card("401288888888188", G16, "-"),
    card("455673758689985", G16, ""),
    "4000 0566 5566 5556",
    card("3625960000000", DINERS, " "),
    card("676770123456789012", G19, " "),
    card("371449635398431"[:14], AMEX, "-"),
    card("520082828282821"[:15], G16, " "),
    card("498765432101234", G16, " "),
    card("62123456789012345", (4, 4, 4, 4, 2), " "),
]

IBAN_TEMPLATES = [
    "Please send the refund to IBAN {v}.",
    "My salary goes to {v} but the transfer bounced.",
    "I made a SEPA transfer to {v} by mistake, can you recall it?",
    "New account for direct debits: {v}",
    "Beneficiary IBAN {v} — is this correct?",
    "iban: {v}",
    "The payment from {v} on 03.12.2024 is missing.",
    "Can you confirm {v} belongs to my landlord?",
    "Refund €250,00 to {v}, reference RF-2291.",
    "I changed my IBAN to {v} last month.",
    "Outgoing transfer to {v} shows failed.",
    "Bitte überweisen Sie auf {v}.",
    "Mi IBAN es {v}.",
    "Virement vers {v} non reçu.",
    "Incoming wire from {v} not credited yet.",
    "Standing order to {v} should be cancelled.",
    "Account {v} is my business account.",
    "Is {v} a valid account? The app rejects it.",
    "My employer pays into {v}.",
    "Transfer of 1.500,00 EUR to {v} stuck since Monday.",
    "Please close {v} and move funds to my savings.",
    "Paying rent to {v}; can I set it up monthly?",
]
IBAN_VALUES = [
    "GB82 WEST 1234 5698 7654 32",
    "DE89 3704 0044 0532 0130 00",
    "FR14 2004 1010 0505 0001 3M02 606",
    "GB33BUKB20201555555555",
    "ES91 2100 0418 4502 0005 1332",
    "IT60 X054 2811 1010 0000 0123 456",
    "NL91ABNA0417164300",
    "IE29 AIBK 9311 5212 3456 78",
    "BE68 5390 0754 7034",
    "CH93 0076 2011 6238 5295 7",
    "AT61 1904 3002 3457 3201",
    "DE44 5001 0517 5407 3249 31",
    "ES79 2100 0813 6101 2345 6789",
    "FR76 3000 6000 0112 3456 7890 189",
    "GB29 NWBK 6016 1331 9268 19",
    make_iban("GB", "MIDL40051512345678"),
    make_iban("DE", "500105170648489890", grouped=False),
    make_iban("NL", "RABO0300065264"),
    make_iban("IE", "BOFI90001710027952"),
    "PL61 1090 1014 0000 0712 1981 2874",
    "SE45 5000 0000 0583 9825 7466",
    "NO93 8601 1117 947",
]

IP_TEMPLATES = [
    "I got a login alert from {v}, that wasn't me.",
    "Your site blocks my IP {v}.",
    "Suspicious sign-in from IP address {v} at 03:12.",
    "The firewall log shows {v} hitting the API.",
    "My router is {v}; the app can't connect.",
    "Access denied for {v} — please whitelist it.",
    "Login from {v} on 12/03/2024, please lock my account.",
    "Our office egress IP is {v}.",
    "Connected from {v} via VPN and got blocked.",
    "Device {v} keeps retrying the payment.",
    "The webhook comes from {v}, is that yours?",
    "ip={v} user-agent=Mozilla/5.0",
    "Someone at {v} tried to reset my password.",
    "IPv6 address {v} is flagged as fraud.",
    "Failed logins from {v} all night.",
    "My server's IP: {v}",
    "Allow-list {v} for our payroll integration.",
    "Login history shows {v}, I've never been there.",
    "The gateway at {v} returns 502.",
    "SSH from {v} to the SFTP drop fails.",
    "Bank API called from {v}, request id 7f3a.",
    "Traceroute stops at {v}.",
    "Please check sessions from {v}.",
    "Blocked: {v} (too many attempts).",
]
IP_VALUES = [
    "192.0.2.44",
    "198.51.100.23",
    "203.0.113.195",
    "10.0.0.12",
    "192.168.1.254",
    "2001:db8::1",
    "172.16.4.20",
    "2001:db8:85a3::8a2e:370:7334",
    "100.64.12.7",
    "fe80::1ff:fe23:4567:890a",
    "2001:0db8:0000:0000:0000:ff00:0042:8329",
    "198.51.100.7",
    "::ffff:192.0.2.128",
    "2001:db8:abcd:12::5",
    "203.0.113.9",
    "192.0.2.200",
    "2001:db8:1234::",
    "8.8.8.8",
    "10.20.30.40",
    "192.168.0.1",
    "2001:db8::7334",
    "198.51.100.254",
    "203.0.113.77",
    "fe80::a00:27ff:fe4e:66a1",
]

CREDENTIALS_TEMPLATES = [
    "Our integration uses https://{v}@portal.example.com/login and it stopped working.",
    "Backups go to ftp://{v}@files.example.net/daily, please check.",
    "The export job connects with postgres://{v}@db.example.internal:5432/tickets",
    "Webhook URL is https://{v}@hooks.example.com/notify — no events since Monday.",
    "SMTP relay smtp://{v}@mail.example.org:587 rejects our statements.",
    "cache: redis://{v}@cache.example.com:6379/0",
    "sftp://{v}@sftp.example.co.uk/inbox gives permission denied",
    "Feed URL http://{v}@feeds.example.com/rates.xml returns 401",
    "Our ERP posts to https://{v}@api.example.com/v2/payments",
    "amqp://{v}@queue.example.net:5672/ drops messages",
    "I pasted https://{v}@bank.example.com in the chat by mistake, sorry!",
    "Repo: https://{v}@git.example.com/acme/payments.git",
]
CREDENTIALS_VALUES = [
    "admin:Sup3rSecret",
    "backup:pa55w0rd",
    "deskuser:hunter2",
    "api_key_9f8a7c",
    "alerts:Qw3rty!",
    ":p4ss",
    "j.smith:Winter2024",
    "rates:r4t3s-feed",
    "erp_sync:Tr0ub4dor&3",
    "guest:guest",
    "maria:MyDogRex1999",
    "ci-bot:ghp_16C7e42F292c6912E7710c838347Ae178B4a",
]

# ---------------------------------------------------------------- positives with several entities

MULTI = [
    "Hi, I'm locked out. Email [[EMAIL:dan.k@example.com]], phone [[PHONE:+44 20 7946 0012]]. Order #A-1123.",
    "Card [[CARD:4111 1111 1111 1111]] was charged £20 twice; call me on [[PHONE:07911 123456]].",
    "Refund to [[IBAN:DE89 3704 0044 0532 0130 00]] please, or email [[EMAIL:refunds+de@example.de]].",
    "Login from [[IP:203.0.113.50]] then a new device [[IP:2001:db8::42]] — neither was me.",
    "Contact: [[EMAIL:lee.chan@example.org]] / [[PHONE:+1 (312) 555-0176]] / ref 44821",
    "Paid 45.00 with [[CARD:5555 5555 5555 4444]] on 12/03/2024 at 10:45, order (ID 88412) shows unpaid.",
    "Transfer from [[IBAN:GB29 NWBK 6016 1331 9268 19]] to [[IBAN:NL91 ABNA 0417 1643 00]] failed.",
    "Server [[IP:198.51.100.10]] posts to ftp://[[CREDENTIALS:ops:0ps-pass]]@[[IP:198.51.100.11]]/in",
    "Hi team,\nname: Anna\nmail: [[EMAIL:anna.schmidt@example.de]]\ntel: [[PHONE:+49 30 901820]]\n",
    "My old card [[CARD:4242-4242-4242-4242]] and new card [[CARD:5105-1051-0510-5100]] both fail.",
    "Email [[EMAIL:ceo@example.com]] and [[EMAIL:cfo@example.com]] about the wire.",
    "Please call [[PHONE:+1 617.555.0102]] or [[PHONE:+44 113 496 0555]], version 5.2.1 of the app crashes.",
    "IBAN [[IBAN:FR76 3000 6000 0112 3456 7890 189]], card [[CARD:3782 822463 10005]], amount €1.234,56.",
    "Alert: login [[IP:192.168.10.20]] for [[EMAIL:it.admin@corp.example.com]] at 02:13:44.",
    "Call me [[PHONE:(202) 555-0143]] re: card ending 1234 and txn TXN-20240312-88412.",
    "mongodb://[[CREDENTIALS:report:R3port!]]@[[IP:10.0.0.7]]:27017 stopped syncing after v3.2.1",
    "Sender [[EMAIL:billing@example.net]] asked me to pay [[IBAN:GB33 BUKB 2020 1555 5555 55]], scam?",
    "Name: Raj, mobile [[PHONE:+91 98765 43210]], card [[CARD:4012 8888 8888 1881]]",
]

# ---------------------------------------------------------------- hard negatives: nothing here is PII

NEGATIVE = {
    "order_reference": [
        "Order #A-10293847 still hasn't shipped.",
        "My order number is 4567890123 and it hasn't arrived.",
        "order 9876543210 was cancelled without notice",
        "Reference: RF-2291-8834, please check.",
        "Ticket #448812 was closed but the issue remains.",
        "Case 20240312001 — any update?",
        "Invoice INV-2024-000123 is wrong.",
        "Tracking number 1Z999AA10123456784 shows delivered, it wasn't.",
        "Booking ref QX7-88A-21 for the card delivery slot.",
        "Confirmation code 5839201 didn't work.",
        "Parcel 00340434161234567890 is stuck at the depot.",
        "customer id 7735102948 — please merge my accounts",
        "My member number is 8812004431.",
        "Account 12345678, sort code 12-34-56, can't see my balance.",
        "Order no. 2024-03-88412 arrived damaged.",
        "Receipt #000918273 for the coffee machine.",
        "Shipment 4400123987 returned to sender.",
        "reference number 6623019485 for the complaint",
        "Claim ID CLM-55-10293 was rejected.",
        "acct 55019283 has a hold on it",
    ],
    "amount": [
        "I was charged £1,234.56 instead of £123.45.",
        "Why is there a $20 fee?",
        "The refund of €1.234,56 hasn't arrived.",
        "Paid 1 234,56 € for nothing.",
        "USD 2,500.00 is missing from my balance.",
        "Two charges of 49.99 each on the same day.",
        "₹15,000 debited twice!",
        "Limit is $1,000,000? That seems wrong.",
        "I sent 250 GBP but they got 248.50.",
        "Fee of 3.5% on a 10,000.00 transfer is too much.",
        "Balance shows -£12.30 after the refund.",
        "Cashback of 5.00 EUR never credited.",
        "Monthly fee went from $4.99 to $9.99.",
        "Withdrew 300 at the ATM, got 200.",
        "Exchange rate 1.1634 applied instead of 1.1702.",
        "Interest 12,345.67 looks wrong for 2023.",
    ],
    "date_time": [
        "The payment on 12/03/2024 is missing.",
        "Statement for 2024-03-12 never came.",
        "Transfer dated 03.12.2024 bounced.",
        "Since 12 March 2024 my card doesn't work.",
        "On 2024/03/12 at 14:32 I got a weird SMS.",
        "Appointment moved to 12-03-2024 10:30.",
        "It happened at 10:45 this morning.",
        "Between 9:00 and 17:30 nobody answers.",
        "Log time 14:30:15 GMT shows the failure.",
        "Timestamp 2024-03-12T10:45:00Z in the error.",
        "Card expires 09/27.",
        "Delivery window 08:00-12:00 on 15.04.2024.",
        "Statement period 01/02/2024 - 29/02/2024.",
        "It was Mar 12, 2024 at 6:05 pm.",
        "Error at 23:59:59.999 on the last day of the month.",
        "Due date 2024-04-01, paid 2024-03-28.",
        "Since 2023 my app has crashed every week.",
        "My birthday is 1985-07-14, the form rejects it.",
    ],
    "card_like_invalid": [
        "Is 4111 1111 1111 1112 a valid card? It was refused.",
        "Card 5555-5555-5555-4445 declined.",
        "I typed 1234 5678 9012 3456 as a test.",
        "Number 4242424242424241 doesn't work.",
        "Partial number 4111 1111 1111 on the letter.",
        "Transaction id 5829 1734 0092 8812 7731 (from the statement).",
        "Auth code 6011 0009 9013 9425 is not a card, right?",
        "My old loyalty card 3782 822463 10006 stopped working.",
        "The voucher 5105105105105101 is invalid.",
        "Gift card 6362 9703 0000 0001 balance?",
    ],
    "last_four": [
        "My card ending 1234 is blocked.",
        "The one ending in 4242 was charged.",
        "Last four digits 0005, expiry 11/26.",
        "Card **** **** **** 1111 declined.",
        "XXXX-XXXX-XXXX-4444 shows on the receipt.",
        "Visa •••• 8431 was charged twice.",
        "card ending with 9921 and CVV I won't share",
        "Account ending -6789 is mine.",
    ],
    "short_number": [
        "I have 3 cards and 2 of them don't work.",
        "My verification code 482913 expired.",
        "It took 45 minutes on hold.",
        "Error 403 when I open the app.",
        "Room 101, floor 3.",
        "Please send 2 replacement cards.",
        "Code 0000 doesn't work as a PIN?",
        "I've called 7 times.",
        "Postcode SW1A 1AA is correct.",
        "Zip 90210, apartment 4B.",
        "Error code E-1042 on checkout.",
        "Step 3 of 5 fails.",
    ],
    "version": [
        "App version 5.12.3 crashes on login.",
        "After updating to iOS 17.4.1 the app won't open.",
        "Android 14 with app v2.3.1.",
        "version 1.2.3.4 of the desktop client",
        "Build 10.0.19045.2965 shows the error.",
        "Chrome 122.0.6261.112 can't load the page.",
        "firmware 3.10.2.1 on the card reader",
        "Using v4.0.0.1 of the plugin.",
        "Release 2024.03.1 broke notifications.",
        "Python 3.11.7 SDK, version 0.9.12",
        "The app (ver. 8.1.0.3) logs me out.",
        "Windows 10.0.22631 and Edge 121.0.2277.128.",
    ],
    "transaction_id": [
        "Transaction TXN-20240312-88412 failed.",
        "transaction id 5829173400 was reversed",
        "txn 9f8a7c6e-1b2d-4e5f-8a9b-0c1d2e3f4a5b is pending",
        "Payment reference 2024031288412 not found.",
        "transfer ref 00012345678 returned",
        "Auth 8F3A21 was declined.",
        "Trace ID: 4bf92f3577b34da6a3ce929d0e0e4736",
        "Request id 7f3a-22c1-9d0e shows an error.",
        "Payment ID pi_3NqXyZ2eZvKYlo2C1abcd failed.",
        "ARN 74987654321098765432109 for the refund.",
        "UTR 432109876543 for the NEFT transfer.",
        "Transaction number 3008123456 please check",
    ],
    "punctuation_lookalike": [
        "Follow us @DeskPilotHelp for updates.",
        "meet @ 3pm at the branch?",
        "Note: my card is fine now.",
        "Re: Re: complaint about fees",
        "Ratio 3:1 on the bonus points seems off.",
        "Error: could not connect (code: 12)",
        "See https://www.example.com/help/cards for details.",
        "URL http://example.com:8080/status shows green.",
        "File path C:\\Users\\anna\\statement.pdf is empty.",
        "std::runtime_error in the desktop app",
        "MAC 00:1A:2B:3C:4D:5E keeps getting blocked.",
        "Call log shows 00:12:45 duration, then it dropped.",
        "Email support@ is that right?",
        "Our handle is @bank_help on X.",
        "Split the bonus 2:1:1 between the three accounts.",
        "DNS 999.10.10.10 is obviously wrong",
        "IP 256.1.1.1 isn't valid, right?",
        "Coordinates 51.5074, -0.1278 for the branch.",
    ],
    "iban_like_invalid": [
        "Is GB82 WEST 1234 5698 7654 33 correct? The bank says no.",
        "DE89 3704 0044 0532 0130 01 was rejected.",
        "IBAN XX12 3456 7890 doesn't look right.",
        "NL00ABNA0123456789 was refused.",
        "Sort code 20-00-00 and account 55779911.",
        "BIC DEUTDEFF500, no IBAN yet.",
    ],
    "plain": [
        "I still haven't received my new card.",
        "How do I change my PIN?",
        "Why was my transfer declined?",
        "Can I get a refund for the duplicate payment?",
        "The app keeps logging me out.",
        "What are the fees for international transfers?",
        "My top-up is still pending.",
        "I want to close my account.",
        "Thanks for your help yesterday!",
        "Please escalate, this is urgent.",
        "Mein Konto ist gesperrt.",
        "¿Por qué me cobraron dos veces?",
        "Ça ne marche toujours pas.",
        "Zażółć gęślą jaźń — test of unicode text.",
        "日本からの送金が届きません。",
        "Card not working 😡 please help",
        "",
        "   ",
    ],
}

# ---------------------------------------------------------------- held out: written after the rules were
# frozen and scored once, to estimate how the detector does on text it was not tuned on.

HOLDOUT_POSITIVE = [
    "Call me at [[PHONE:202-555-0148]] ext 12 if the chat drops.",
    "Tel: [[PHONE:+44-20-7946-0959]]",
    "Phone [[PHONE:+49-30-1234567]] (office hours only)",
    "My cell is [[PHONE:415-555-0199]].",
    "Please confirm by email ([[EMAIL:g.harris@example.org]]).",
    "Email:[[EMAIL:Lena.K@Example.COM]]",
    "Send it to <[[EMAIL:ops+alerts@status.example.net]]>, thanks.",
    "Card: [[CARD:5555 5555 5555 4444]], exp 01/28, CVV withheld.",
    "the number is [[CARD:4111111111111111]].",
    "(card [[CARD:4000 0566 5566 5556]])",
    "IBAN:[[IBAN:DE89370400440532013000]]",
    "refund to [[IBAN:gb82west12345698765432]] please",
    "My IBAN is [[IBAN:IE64 IRCE 9205 0112 3456 78]]\nThanks",
    "Connection from [[IP:203.0.113.5]]:8080 refused.",
    "Blocked host [[[IP:192.0.2.1]]] in the log.",
    "Endpoint [[[IP:2001:db8::1]]]:443 times out.",
    "It uses https://[[CREDENTIALS:svc:pa%40ss]]@reports.example.com/daily",
    "Hi, it's Omar ([[PHONE:+1 312 555 0177]]), card [[CARD:3530 1113 3330 0000]] stopped working.",
    "Wire from [[IBAN:FR76 3000 6000 0112 3456 7890 189]] bounced; contact [[EMAIL:treasury@example.fr]].",
    "Login alerts from [[IP:198.51.100.77]] and [[IP:198.51.100.78]] tonight.",
    "Numero: [[PHONE:+39 06 6982 1234]]",
    "Pls ring [[PHONE:0113 496 0000]] before 6",
    "mobile -> [[PHONE:+61 412 345 678]]",
    "My email address has changed to [[EMAIL:n.okafor@mail.example.ng]] — update please.",
    "Card [[CARD:6011-0009-9013-9424]] charged in a currency I don't use.",
    "IP was [[IP:10.1.2.3]], device was a Pixel.",
    "db url postgresql://[[CREDENTIALS:app:s3cret]]@[[IP:172.16.0.5]]/prod",
    "WhatsApp [[PHONE:+91 91234 56789]] for the documents.",
    "Please email [[EMAIL:help@example.com]] or [[EMAIL:complaints@example.com]].",
    "Reach Ms. Novak on [[PHONE:+353 1 555 0123]]",
    "My Visa [[CARD:4556 7375 8689 9855]] and my Mastercard both got blocked.",
    "Here: [[IBAN:ES91 2100 0418 4502 0005 1332]].",
    "unknown login [[IP:2001:db8:4:2::a]] at 04:00",
    "call back [[PHONE:(020) 7946 0011]]",
    "I'm [[EMAIL:tim_o@example.co.nz]], account holder since 2015.",
    "Amex [[CARD:3714 496353 98431]] declined at the hotel.",
    "Landlord's IBAN [[IBAN:NL02 ABNA 0123 4567 89]] changed?",
    "SFTP sftp://[[CREDENTIALS:upload:Upl0ad!]]@drop.example.com fails since 2024-03-01.",
    "new number: [[PHONE:+44 7911 123456]], old one lost",
    "Alerts go to [[EMAIL:security-team@bank.example.com]] and [[PHONE:+1 (646) 555-0142]].",
]

HOLDOUT_NEGATIVE = [
    "Order ID: 5550143 hasn't arrived.",
    "Tracking: 9400 1000 0000 0000 0000 00",
    "Ref 2025550143, please look it up.",
    "Invoice 2024/0031 is duplicated.",
    "Amount: 1,202,555.01 is not what I sent.",
    "Serial number SN-4111-2222-3333 on the card reader.",
    "Model XPS-9310 laptop can't open the app.",
    "version 2.0.1.12 has the bug",
    "Dates 2024.03.12 and 12.03.24 both appear on the statement.",
    "Time 10:30:00 on the receipt.",
    "error 0x80070005 when installing",
    "SKU 8801643123456 was out of stock.",
    "Bank code 37040044 is correct.",
    "Your ref is 83920174652 per the letter.",
    "I paid 2,000.00 on 01/04 and 1,500.00 on 15/04.",
    "Store #0457, till 3, 14:22.",
    "Cheque number 000123 bounced.",
    "I need 4 cards for 4 employees.",
    "The code on the back is 839.",
    "Reward points: 12,450.",
    "Transaction 1234-5678-9012 failed.",
    "Flight BA0117 on 12 May.",
    "Kundennummer 1234567890, bitte prüfen.",
    "Pedido 4059321877 no ha llegado.",
    "Lot 2024-03-12-001 recalled?",
    "Please call me, I don't want to write my number here.",
    "My email is on file, don't ask again.",
    "Send to my usual IBAN please.",
    "Reading 004512 on the meter.",
    "It says 'error 12:7' and quits.",
    "ISO 8601 says 2024-03-12T10:45:00+01:00.",
    "Branch 20-00-00 closed early.",
    "I want card limit 5000 and ATM limit 500.",
    "Pay ID 5f2b8c1e9a7d4e3b",
    "Rule 3.2.1.4 of the terms seems unfair.",
    "Ping me at 3.",
    "Statement ref 4111 1111 1111 (first 12 only).",
    "Tax year 2023/24.",
    "Old phone broke; new one arrives Monday.",
]


def _fill(templates: list[str], kind: str, values: list[str]) -> list[str]:
    assert len(templates) == len(values), (kind, len(templates), len(values))
    return [t.replace("{v}", f"[[{kind}:{v}]]") for t, v in zip(templates, values, strict=True)]


def _parse(marked: str) -> tuple[str, list[dict[str, object]]]:
    text_parts: list[str] = []
    entities: list[dict[str, object]] = []
    cursor = length = 0
    for match in MARK.finditer(marked):
        plain = marked[cursor : match.start()]
        text_parts.append(plain)
        length += len(plain)
        kind, value = match.group(1), match.group(2)
        entities.append({"kind": kind, "start": length, "end": length + len(value)})
        text_parts.append(value)
        length += len(value)
        cursor = match.end()
    text_parts.append(marked[cursor:])
    return "".join(text_parts), entities


def _check(kind: str, value: str) -> None:
    """Gold values must be the real thing, or the evaluation would measure the wrong question."""
    if kind == "CARD":
        digits = re.sub(r"[ -]", "", value)
        assert 13 <= len(digits) <= 19, value
        assert luhn.is_valid(digits), value
    elif kind == "IBAN":
        assert iban.is_valid(value, check_country=False), value
    elif kind == "PHONE":
        assert any(phonenumbers.is_valid_number(phonenumbers.parse(value, r)) for r in REGIONS), value
    elif kind == "IP":
        ipaddress.ip_address(value)
    elif kind == "EMAIL":
        assert value.count("@") == 1, value
    elif kind == "CREDENTIALS":
        assert "/" not in value, value
        assert not value.endswith("@"), value
    else:
        raise AssertionError(f"unknown kind {kind}")


def _check_negative(text: str) -> None:
    """Card- and IBAN-shaped hard negatives must really fail their checksums."""
    for run in re.findall(r"\d(?:[ -]?\d){12,18}", text):
        assert not luhn.is_valid(re.sub(r"[ -]", "", run)), text
    for run in re.findall(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{2,4}){3,8}", text):
        assert not iban.is_valid(run, check_country=False), text


def build() -> list[dict[str, object]]:
    positives: list[tuple[str, str]] = []
    for kind, templates, values in (
        ("EMAIL", EMAIL_TEMPLATES, EMAIL_VALUES),
        ("PHONE", PHONE_TEMPLATES, PHONE_VALUES),
        ("CARD", CARD_TEMPLATES, CARD_VALUES),
        ("IBAN", IBAN_TEMPLATES, IBAN_VALUES),
        ("IP", IP_TEMPLATES, IP_VALUES),
        ("CREDENTIALS", CREDENTIALS_TEMPLATES, CREDENTIALS_VALUES),
    ):
        positives.extend((kind.lower(), marked) for marked in _fill(templates, kind, values))
    positives.extend(("multi", marked) for marked in MULTI)
    positives.extend(("holdout_pii", marked) for marked in HOLDOUT_POSITIVE)
    cases: list[dict[str, object]] = []
    for category, marked in positives:
        text, entities = _parse(marked)
        for ent in entities:
            start, end = ent["start"], ent["end"]
            assert isinstance(start, int)
            assert isinstance(end, int)
            _check(str(ent["kind"]), text[start:end])
        cases.append(
            {"id": f"p{len(cases) + 1:03d}", "category": category, "text": text, "entities": entities}
        )
    for category, texts in (*NEGATIVE.items(), ("holdout_negative", HOLDOUT_NEGATIVE)):
        for text in texts:
            assert "[[" not in text
            _check_negative(text)
            cases.append({"id": f"n{len(cases) + 1:03d}", "category": category, "text": text, "entities": []})
    return cases


def main() -> None:
    cases = build()
    with OUT.open("w", encoding="utf-8", newline="\n") as fh:
        for case in cases:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    n_pos = sum(1 for c in cases if c["entities"])
    print(f"wrote {len(cases)} cases ({n_pos} with PII, {len(cases) - n_pos} hard negatives) to {OUT}")


if __name__ == "__main__":
    main()
