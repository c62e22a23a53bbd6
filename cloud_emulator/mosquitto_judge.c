/* The emulator's MQTT 3.1 side: a mosquitto 2.0 plugin (plugin API v5) that asks the cloud
 * emulator to judge every login, subscription and publish, so that mosquitto serves the MQTT
 * 3.1 ("MQIsdp") clients the emulator's amqtt broker cannot (cloud_emulator/mqtt31.py starts
 * mosquitto with it and routes those clients there).
 *
 * One request per event, over the unix socket named by `plugin_opt_judge` ("@name": Linux's
 * abstract namespace): a line of fields
 * separated by spaces, strings in hex ("-" for none); the emulator answers with lines and
 * closes. Replies: "OK" or "NO" first, then any number of "PUB <hex topic> <hex payload>"
 * lines, messages the cloud sends (after a login: to that client alone; after a publish: to
 * its subscribers). Every wait is bounded (JUDGE_TIMEOUT_S); no answer means refusal.
 *
 *   AUTH <address> <client id> <username> <password> <keepalive> <protocol version>
 *   ACL <address> <client id> <subscribe|publish> <topic>
 *   MSG <address> <client id> <qos> <topic> <payload>
 *   BYE <address> <client id> <reason>        (mosquitto's reason code; 19: keepalive)
 *
 * Built by tools/bootstrap.sh: gcc -shared -fPIC mosquitto_judge.c -o build/mosquitto/...
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define JUDGE_TIMEOUT_S 10
#define MAX_REQUEST (4 * 65536)
#define MAX_REPLY (4 * 65536)
#define MAX_CLIENT_ID 512  /* longer ids are refused: the clouds allow 64 or 128 characters */

static mosquitto_plugin_id_t *plugin_id;
static char judge_path[100];
static size_t judge_path_len;

static void hex_field(char *out, size_t *at, const void *data, size_t len, int present)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *bytes = data;
	out[(*at)++] = ' ';
	if(!present){
		out[(*at)++] = '-';
		return;
	}
	if(len == 0){
		out[(*at)++] = '=';  /* present but empty */
		return;
	}
	for(size_t i = 0; i < len; i++){
		out[(*at)++] = digits[bytes[i] >> 4];
		out[(*at)++] = digits[bytes[i] & 15];
	}
}

static void text_field(char *out, size_t *at, const char *text)
{
	hex_field(out, at, text, text ? strlen(text) : 0, text != NULL);
}

static void word_field(char *out, size_t *at, const char *word)
{
	size_t len = strlen(word);
	out[(*at)++] = ' ';
	memcpy(out + *at, word, len);
	*at += len;
}

/* Sends the request, reads the whole reply into `reply` (NUL-terminated). 0 on success. */
static int ask(const char *request, size_t len, char *reply, size_t size)
{
	struct sockaddr_un addr;
	struct timeval timeout = {JUDGE_TIMEOUT_S, 0};
	size_t got = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if(fd < 0) return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	memcpy(addr.sun_path, judge_path, judge_path_len);
	if(judge_path[0] == '@') addr.sun_path[0] = '\0';  /* Linux abstract namespace: no file, no path limit issue */
	if(connect(fd, (struct sockaddr *)&addr, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + judge_path_len)) < 0){
		goto fail;
	}
	for(size_t sent = 0; sent < len;){
		ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
		if(n <= 0) goto fail;
		sent += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	while(got + 1 < size){
		ssize_t n = recv(fd, reply + got, size - 1 - got, 0);
		if(n < 0) goto fail;
		if(n == 0) break;
		got += (size_t)n;
	}
	reply[got] = '\0';
	close(fd);
	return 0;
fail:
	mosquitto_log_printf(MOSQ_LOG_WARNING, "dynreg judge: no answer from %s (%s)", judge_path, strerror(errno));
	close(fd);
	return -1;
}

static int unhex(const char *text, size_t len, unsigned char *out)
{
	for(size_t i = 0; i + 1 < len; i += 2){
		unsigned int byte;
		if(sscanf(text + i, "%2x", &byte) != 1) return -1;
		out[i / 2] = (unsigned char)byte;
	}
	return (int)(len / 2);
}

/* The PUB lines of a reply: each published to `clientid` (NULL: to its subscribers). */
static void publish_replies(char *reply, const char *clientid)
{
	char *line = strchr(reply, '\n');
	while(line != NULL && *++line){
		char *end = strchr(line, '\n');
		char *space1, *space2;
		if(end) *end = '\0';
		space1 = strchr(line, ' ');
		space2 = space1 ? strchr(space1 + 1, ' ') : NULL;
		if(strncmp(line, "PUB ", 4) == 0 && space1 && space2){
			size_t topic_hex = (size_t)(space2 - space1 - 1), payload_hex = strlen(space2 + 1);
			char *topic = calloc(topic_hex / 2 + 1, 1);
			unsigned char *payload = malloc(payload_hex / 2 + 1);
			if(topic && payload && unhex(space1 + 1, topic_hex, (unsigned char *)topic) >= 0){
				int payload_len = strcmp(space2 + 1, "=") == 0 ? 0 : unhex(space2 + 1, payload_hex, payload);
				if(payload_len >= 0){
					mosquitto_broker_publish_copy(clientid, topic, payload_len, payload, 0, false, NULL);
				}
			}
			free(topic);
			free(payload);
		}
		line = end;
	}
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	char *request = malloc(MAX_REQUEST), *reply = malloc(MAX_REPLY);
	const char *clientid = mosquitto_client_id(ed->client);
	char number[32];
	size_t at = 0;
	int rc = MOSQ_ERR_AUTH;
	(void)event; (void)userdata;
	if(!request || !reply || clientid == NULL || strlen(clientid) > MAX_CLIENT_ID) goto done;
	if((ed->username && strlen(ed->username) > 4096) || (ed->password && strlen(ed->password) > 4096)) goto done;
	memcpy(request, "AUTH", 4); at = 4;
	word_field(request, &at, mosquitto_client_address(ed->client));
	text_field(request, &at, clientid);
	text_field(request, &at, ed->username);
	text_field(request, &at, ed->password);
	snprintf(number, sizeof(number), "%d", mosquitto_client_keepalive(ed->client));
	word_field(request, &at, number);
	snprintf(number, sizeof(number), "%d", mosquitto_client_protocol_version(ed->client));
	word_field(request, &at, number);
	request[at++] = '\n';
	if(ask(request, at, reply, MAX_REPLY) == 0 && strncmp(reply, "OK", 2) == 0){
		publish_replies(reply, clientid);  /* queued: delivered once the CONNACK is out */
		rc = MOSQ_ERR_SUCCESS;
	}
done:
	free(request);
	free(reply);
	return rc;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	char request[8192], reply[64];
	size_t at = 0;
	(void)event; (void)userdata;
	if(ed->access == MOSQ_ACL_READ || ed->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
	if(strlen(ed->topic) > 2048 || strlen(mosquitto_client_id(ed->client)) > MAX_CLIENT_ID) return MOSQ_ERR_ACL_DENIED;
	memcpy(request, "ACL", 3); at = 3;
	word_field(request, &at, mosquitto_client_address(ed->client));
	text_field(request, &at, mosquitto_client_id(ed->client));
	word_field(request, &at, ed->access == MOSQ_ACL_SUBSCRIBE ? "subscribe" : "publish");
	text_field(request, &at, ed->topic);
	request[at++] = '\n';
	if(ask(request, at, reply, sizeof(reply)) == 0 && strncmp(reply, "OK", 2) == 0) return MOSQ_ERR_SUCCESS;
	return MOSQ_ERR_ACL_DENIED;
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	char *request, *reply, number[8];
	size_t at = 0;
	(void)event; (void)userdata;
	if(ed->payloadlen > 32768 || strlen(ed->topic) > 2048 || strlen(mosquitto_client_id(ed->client)) > MAX_CLIENT_ID){
		return MOSQ_ERR_SUCCESS;
	}
	request = malloc(MAX_REQUEST);
	reply = malloc(MAX_REPLY);
	if(request && reply){
		memcpy(request, "MSG", 3); at = 3;
		word_field(request, &at, mosquitto_client_address(ed->client));
		text_field(request, &at, mosquitto_client_id(ed->client));
		snprintf(number, sizeof(number), "%d", ed->qos);
		word_field(request, &at, number);
		text_field(request, &at, ed->topic);
		hex_field(request, &at, ed->payload, ed->payloadlen, 1);
		request[at++] = '\n';
		if(ask(request, at, reply, MAX_REPLY) == 0 && strncmp(reply, "OK", 2) == 0){
			publish_replies(reply, NULL);
		}
	}
	free(request);
	free(reply);
	return MOSQ_ERR_SUCCESS;  /* the ACL check already decided whether it is delivered */
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	char request[1024], reply[16], number[16];
	size_t at = 0;
	const char *clientid = mosquitto_client_id(ed->client);
	(void)event; (void)userdata;
	if(clientid == NULL || strlen(clientid) > MAX_CLIENT_ID) return MOSQ_ERR_SUCCESS;
	memcpy(request, "BYE", 3); at = 3;
	word_field(request, &at, mosquitto_client_address(ed->client));
	text_field(request, &at, clientid);
	snprintf(number, sizeof(number), "%d", ed->reason);
	word_field(request, &at, number);
	request[at++] = '\n';
	ask(request, at, reply, sizeof(reply));
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
                          int option_count)
{
	(void)userdata;
	plugin_id = identifier;
	for(int i = 0; i < option_count; i++){
		if(strcmp(options[i].key, "judge") == 0 && strlen(options[i].value) < sizeof(judge_path)){
			judge_path_len = strlen(options[i].value);
			memcpy(judge_path, options[i].value, judge_path_len);
		}
	}
	if(judge_path[0] == '\0'){
		mosquitto_log_printf(MOSQ_LOG_ERR, "dynreg judge: plugin_opt_judge is required");
		return MOSQ_ERR_INVAL;
	}
	if(mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL)
	   || mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL)
	   || mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL)
	   || mosquitto_callback_register(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL)){
		return MOSQ_ERR_UNKNOWN;
	}
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata; (void)options; (void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	return MOSQ_ERR_SUCCESS;
}
