# A small stack on kumo with Terraform's own AWS provider, unchanged: a VPC, a subnet, a security
# group, a key pair, an instance of kumo's tiny image, a data volume attached to it and an Elastic
# IP. See docs/terraform.md for access keys, TLS trust and what is supported.
#
#   export AWS_ACCESS_KEY_ID=AKIA… AWS_SECRET_ACCESS_KEY=…     # kumo access-key create --json
#   export AWS_CA_BUNDLE=/var/lib/kumo/tls/ca.pem             # trust kumo's CA (https endpoints)
#   terraform init && terraform apply -var kumo_endpoint=https://kumo.example.org:8471

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

variable "kumo_endpoint" {
  description = "kumo's API base URL: EC2 and STS are both served at its root"
  type        = string
  default     = "https://127.0.0.1:8471"
}

variable "region" {
  description = "kumo's region (kumo server --region; kumo-1 by default)"
  type        = string
  default     = "kumo-1"
}

variable "image_name" {
  description = "an image every project sees (kumo image build tiny makes `tiny`, public)"
  type        = string
  default     = "tiny"
}

variable "instance_type" {
  description = "a kumo instance type (aws ec2 describe-instance-types; kumo instance-type list)"
  type        = string
  default     = "nano"
}

variable "data_volume_gib" {
  description = "size of the data volume; raising it grows the volume online (ModifyVolume)"
  type        = number
  default     = 1
}

variable "ssh_public_key" {
  description = "an OpenSSH public key line"
  type        = string
  default     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGuffmeoaz9Pmo+s5eNpd8jOqsO6+v2cEXXlWHf6jj64 kumo-example"
}

provider "aws" {
  region = var.region

  # kumo is not an AWS region and has no instance metadata for the provider to probe; the access
  # key is checked by the first real call instead (STS GetCallerIdentity works too: these two
  # may be left out).
  skip_region_validation      = true
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true

  endpoints {
    ec2 = var.kumo_endpoint
    sts = var.kumo_endpoint
  }

  default_tags {
    tags = { managed-by = "terraform" }
  }
}

data "aws_availability_zones" "available" {
  state = "available"
}

data "aws_ami" "tiny" {
  most_recent = true
  filter {
    name   = "name"
    values = [var.image_name]
  }
}

resource "aws_vpc" "main" {
  cidr_block           = "10.20.0.0/16"
  enable_dns_hostnames = true
  tags                 = { Name = "kumo-example" }
}

resource "aws_subnet" "a" {
  vpc_id            = aws_vpc.main.id
  cidr_block        = "10.20.1.0/24"
  availability_zone = data.aws_availability_zones.available.names[0]
  tags              = { Name = "kumo-example-a" }
}

resource "aws_security_group" "web" {
  name        = "web"
  description = "ssh and http in, everything out"
  vpc_id      = aws_vpc.main.id

  ingress {
    description = "ssh"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  ingress {
    description = "http"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
  tags = { Name = "web" }
}

resource "aws_key_pair" "admin" {
  key_name   = "admin"
  public_key = var.ssh_public_key
}

resource "aws_instance" "web" {
  ami                    = data.aws_ami.tiny.id
  instance_type          = var.instance_type
  subnet_id              = aws_subnet.a.id
  vpc_security_group_ids = [aws_security_group.web.id]
  key_name               = aws_key_pair.admin.key_name
  user_data              = "#!/bin/sh\necho hello from terraform\n"
  tags                   = { Name = "web" }
}

resource "aws_ebs_volume" "data" {
  availability_zone = aws_subnet.a.availability_zone
  size              = var.data_volume_gib
  tags              = { Name = "web-data" }
}

resource "aws_volume_attachment" "data" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data.id
  instance_id = aws_instance.web.id
}

resource "aws_eip" "web" {
  domain   = "vpc"
  instance = aws_instance.web.id
  tags     = { Name = "web" }
}

output "instance_id" {
  value = aws_instance.web.id
}

output "private_ip" {
  value = aws_instance.web.private_ip
}

output "public_ip" {
  value = aws_eip.web.public_ip
}
